import { Chip } from '../src/hwtpm/chip.ts';
import { Tpm2Client } from '../src/hwtpm/tpm2-client.ts';
import { eccSigningTemplate } from '../src/hwtpm/tpm2-templates.ts';
import { CC, RH, ST } from '../src/tpm/tpm2/constants.ts';
import { MemoryStateStore } from '../src/tpm/tpm2/state/store.ts';
const AUTH = Buffer.from('a secret the guest never sees!!!', 'latin1');
const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
const tpm = new Tpm2Client((c) => chip.execute(c, 0)); await tpm.startup();
const parent = await tpm.createPrimary(RH.OWNER, eccSigningTemplate(false));
const key = await tpm.createPrimary(RH.OWNER, eccSigningTemplate(false), { userAuth: AUTH });
console.log(parent.name.toString('hex'), key.name.toString('hex'));
const session = await tpm.startHmacSession();
const sign = (auth: any) => tpm.call(CC.Sign, [key.handle], [auth], { digest: Buffer.alloc(32, 7), inScheme: { scheme: 0x18, hashAlg: 0xb }, validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) } });
for (const [what, a] of [['wrong auth', { hmacSession: session, authValue: Buffer.from('guess'), names: [key.name] }], ['wrong name', { hmacSession: session, authValue: AUTH, names: [parent.name] }], ['good', { hmacSession: session, authValue: AUTH, names: [key.name] }]] as const) {
  try { await sign(a); console.log(what, 'ok'); } catch (e) { console.log(what, (e as Error).message); }
}
