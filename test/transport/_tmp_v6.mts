import { startSwtpmServer } from '/work/main/src/transport/swtpm-server.ts';
import { FakeDevice, silentLogger, Client, command } from '/work/main/test/transport/helpers.ts';
const s = await startSwtpmServer(new FakeDevice(), { data: {type:'tcp',port:0,bindaddr:'::1'}, ctrl:{type:'tcp',port:0,bindaddr:'::1'}, logger: silentLogger, flags:{notNeedInit:true} });
console.log(s.data, s.ctrl);
const c = await Client.connect(s.data); console.log((await c.transact(command(0x17b))).toString('hex')); c.close();
await s.close();
try { await startSwtpmServer(new FakeDevice(), { data: {type:'tcp',port:0,bindaddr:'10.9.9.9'}, ctrl:{type:'tcp',port:0}, logger: silentLogger }); } catch (e) { console.log(String(e)); }
try { await startSwtpmServer(new FakeDevice(), { data: {type:'tcp',port:80}, ctrl:{type:'tcp',port:0}, logger: silentLogger }); } catch (e) { console.log(String(e)); }
try { await startSwtpmServer(new FakeDevice(), { data: {type:'unixio',path:'/proc/nope/x.sock'}, ctrl:{type:'tcp',port:0}, logger: silentLogger }); } catch (e) { console.log(String(e)); }
