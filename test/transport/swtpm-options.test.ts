import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { OptionError } from '../../src/transport/errors.ts';
import { parseCtrlOption, parseFlagsOption, parseServerOption, parseTpmstateOption } from '../../src/transport/swtpm-options.ts';

test('--server defaults to TCP on port 2321 and takes port, bindaddr and disconnect as swtpm does', () => {
  assert.deepEqual(parseServerOption('type=tcp'), { endpoint: { type: 'tcp', port: 2321 }, disconnect: false });
  assert.deepEqual(parseServerOption('port=0,bindaddr=::1,disconnect'), {
    endpoint: { type: 'tcp', port: 0, bindaddr: '::1' },
    disconnect: true,
  });
});

test('--server type=unixio takes a path and an octal mode with a leading 0', () => {
  assert.deepEqual(parseServerOption('type=unixio,path=/run/tpm.sock,mode=0700'), {
    endpoint: { type: 'unixio', path: '/run/tpm.sock', mode: 0o700 },
    disconnect: false,
  });
  assert.throws(() => parseServerOption('type=unixio,path=/x,mode=700'), /mode must be octal with a leading 0/);
});

test('--ctrl requires a type, and a port for TCP', () => {
  assert.deepEqual(parseCtrlOption('type=tcp,port=2322'), { type: 'tcp', port: 2322 });
  assert.deepEqual(parseCtrlOption('type=unixio,path=ctrl.sock'), { type: 'unixio', path: 'ctrl.sock' });
  assert.throws(() => parseCtrlOption('port=2322'), /--ctrl: type= is required/);
  assert.throws(() => parseCtrlOption('type=tcp'), /--ctrl: type=tcp needs port=<number>/);
});

test('unknown sub-options are rejected with the option and the sub-option named', () => {
  assert.throws(() => parseServerOption('type=tcp,prot=1'), (err: unknown) => {
    assert.ok(err instanceof OptionError);
    assert.match(err.message, /^--server: unknown sub-option 'prot'; supported: /);
    return true;
  });
  assert.throws(() => parseCtrlOption('type=tcp,port=1,disconnect'), /--ctrl: unknown sub-option 'disconnect'/);
  assert.throws(() => parseTpmstateOption('directory=/x'), /--tpmstate: unknown sub-option 'directory'/);
});

test('swtpm sub-options vtpmd does not implement are refused rather than ignored', () => {
  assert.throws(() => parseServerOption('type=tcp,fd=3'), /--server: 'fd' is a swtpm sub-option that vtpmd does not support/);
  assert.throws(() => parseCtrlOption('type=unixio,clientfd=4'), /'clientfd' is a swtpm sub-option that vtpmd does not support/);
  assert.throws(() => parseTpmstateOption('backend-uri=dir:///x'), /'backend-uri' is a swtpm sub-option/);
});

test('sub-options must fit the type, appear once and carry values where needed', () => {
  assert.throws(() => parseServerOption('type=tcp,path=/x'), /--server: 'path' does not apply to type=tcp/);
  assert.throws(() => parseServerOption('type=unixio,path=/x,port=1'), /'port' does not apply to type=unixio/);
  assert.throws(() => parseServerOption('port=1,port=2'), /'port' is given twice/);
  assert.throws(() => parseServerOption('port='), /'port' needs a value/);
  assert.throws(() => parseServerOption('disconnect=yes'), /'disconnect' takes no value/);
  assert.throws(() => parseServerOption('type=udp'), /unknown type 'udp'; supported: tcp, unixio/);
  assert.throws(() => parseServerOption('port=1,,'), /empty item/);
});

test('ports outside 0-65535 or not decimal are rejected', () => {
  for (const port of ['65536', '-1', 'http', '1e3', '']) {
    assert.throws(() => parseServerOption(`port=${port}`), OptionError, port);
  }
  assert.deepEqual(parseServerOption('port=65535').endpoint, { type: 'tcp', port: 65535 });
});

test('--tpmstate needs dir=', () => {
  assert.equal(parseTpmstateOption('dir=/var/lib/vtpm'), '/var/lib/vtpm');
});

test('--flags: startup-* implies not-need-init except startup-none, and only one startup type is allowed', () => {
  assert.deepEqual(parseFlagsOption('not-need-init'), { notNeedInit: true });
  assert.deepEqual(parseFlagsOption('not-need-init,startup-clear'), { notNeedInit: true, startup: 'clear' });
  assert.deepEqual(parseFlagsOption('startup-state'), { startup: 'state' });
  assert.deepEqual(parseFlagsOption('startup-none'), {});
  assert.throws(() => parseFlagsOption('startup-clear,startup-none'), /exclude each other/);
  assert.throws(() => parseFlagsOption('need-init'), /--flags: unknown flag 'need-init'/);
});

test('option parsing never fails with anything but an OptionError', () => {
  const text = fc.stringMatching(/^[a-z=,0-9./-]{0,40}$/);
  fc.assert(
    fc.property(text, (value) => {
      for (const parse of [parseServerOption, parseCtrlOption, parseTpmstateOption, parseFlagsOption]) {
        try {
          parse(value);
        } catch (err) {
          assert.ok(err instanceof OptionError, `${String(err)} for '${value}'`);
        }
      }
    }),
  );
});
