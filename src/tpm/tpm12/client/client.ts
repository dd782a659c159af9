import { randomBytes } from 'node:crypto';
import { Writer, Reader, u32be } from '../../wire/buffer.ts';
import type { Codec } from '../../wire/codec.ts';
import { AUTH_USAGE, CAP, ES, ET, KEY_USAGE, KH, ORD, PID, RT, SS, STAG } from '../constants.ts';
import { osapSharedSecret } from '../auth/hmac.ts';
import { bool, bytes32, enc, STRUCT_VER_11 } from '../structures/basic.ts';
import { key, keyParms, pubkey, rsaKeyParms, type Key, type PubKey } from '../structures/key.ts';
import { storedData, type StoredData } from '../structures/stored-data.ts';
import { pcrComposite, pcrInfoShort, selectionOf, type PcrInfoShort } from '../structures/pcr.ts';
import { certifyInfo, certifyInfo2, quoteInfo, quoteInfo2 } from '../structures/attest.ts';
import { counterValue, permanentFlags, stclearFlags, type CounterValue, type PermanentFlags, type StclearFlags } from '../structures/flags.ts';
import { symmetricKey, type SymmetricKey } from '../structures/identity.ts';
import { nvDataPublic, type NvDataPublic } from '../structures/nv.ts';
import { ClientSession } from './session.ts';
import { transmit, type AuthUse, type CommandSpec, type Exec } from './transport.ts';
import { encryptTcpa, sha1 } from './helpers.ts';

export interface KeyTemplate {
  usage: number;
  bits?: number;
  encScheme?: number;
  sigScheme?: number;
  authDataUsage?: number;
  /** TPM_KEY_FLAGS (TPM_KEY_FLAG.MIGRATABLE…). */
  flags?: number;
  /** TPM_PCR_INFO_LONG for a TPM_KEY12 (see pcrInfoLongFor). */
  pcrInfo?: Buffer;
}

/** The usual schemes per key usage. */
function schemesFor(usage: number): { encScheme: number; sigScheme: number } {
  switch (usage) {
    case KEY_USAGE.STORAGE:
      return { encScheme: ES.RSAESOAEP_SHA1_MGF1, sigScheme: SS.NONE };
    case KEY_USAGE.BIND:
      return { encScheme: ES.RSAESOAEP_SHA1_MGF1, sigScheme: SS.NONE };
    case KEY_USAGE.LEGACY:
      return { encScheme: ES.RSAESOAEP_SHA1_MGF1, sigScheme: SS.RSASSAPKCS1v15_SHA1 };
    default:
      return { encScheme: ES.NONE, sigScheme: SS.RSASSAPKCS1v15_SHA1 };
  }
}

/** A TPM_KEY12 template (no key material) for CreateWrapKey, TakeOwnership and MakeIdentity. */
export function keyTemplate(t: KeyTemplate): Key {
  const s = schemesFor(t.usage);
  return {
    key12: true,
    keyUsage: t.usage,
    keyFlags: t.flags ?? 0,
    authDataUsage: t.authDataUsage ?? AUTH_USAGE.ALWAYS,
    algorithmParms: {
      algorithmID: 1,
      encScheme: t.encScheme ?? s.encScheme,
      sigScheme: t.sigScheme ?? s.sigScheme,
      parms: enc(rsaKeyParms, { keyLength: t.bits ?? 2048, numPrimes: 2, exponent: Buffer.alloc(0) }),
    },
    pcrInfo: t.pcrInfo ?? Buffer.alloc(0),
    pubKey: Buffer.alloc(0),
    encData: Buffer.alloc(0),
  };
}

function read<T>(c: Codec<T>, r: Reader): T {
  return c.decode(r);
}

export interface QuoteResult {
  pcrValues: Buffer[];
  /** The TPM_QUOTE_INFO the signature covers (its SHA-1). */
  signed: Buffer;
  sig: Buffer;
}

export interface Quote2Result {
  pcrData: PcrInfoShort;
  versionInfo: Buffer;
  signed: Buffer;
  sig: Buffer;
}

/**
 * A TPM 1.2 client: builds commands, runs OIAP / OSAP / ADIP on the client side, checks
 * every response HMAC and rolls the nonces. Authorized calls open a session per call and let
 * the TPM close it. Auth values are the 20-byte secrets (see authFromPassword); null means the
 * entity needs no authorization (authDataUsage TPM_AUTH_NEVER).
 */
export class Tpm12Client {
  private readonly random: (n: number) => Buffer;

  constructor(
    readonly exec: Exec,
    opts: { random?: (n: number) => Buffer } = {},
  ) {
    this.random = opts.random ?? ((n) => randomBytes(n));
  }

  /** Sends a command as specified (for commands without a convenience method). */
  run(spec: CommandSpec) {
    return transmit(this.exec, spec);
  }

  // Sessions

  async oiap(): Promise<ClientSession> {
    const { reader } = await this.run({ name: 'TPM_OIAP', ordinal: ORD.OIAP });
    return new ClientSession('oiap', reader.u32(), Buffer.from(reader.bytes(20)), undefined, this.random);
  }

  async osap(entityType: number, entityValue: number, entityAuth: Buffer): Promise<ClientSession> {
    const nonceOddOSAP = this.random(20);
    const w = new Writer(32).u16(entityType).u32(entityValue).bytes(nonceOddOSAP);
    const { reader } = await this.run({ name: 'TPM_OSAP', ordinal: ORD.OSAP, params: w.finish() });
    const handle = reader.u32();
    const nonceEven = Buffer.from(reader.bytes(20));
    const nonceEvenOSAP = Buffer.from(reader.bytes(20));
    return new ClientSession('osap', handle, nonceEven, osapSharedSecret(entityAuth, nonceEvenOSAP, nonceOddOSAP), this.random);
  }

  private async oiapAuth(auth: Buffer | null): Promise<AuthUse[]> {
    return auth ? [{ session: await this.oiap(), auth }] : [];
  }

  // Startup, capability, random, PCRs

  async startup(type: number): Promise<void> {
    await this.run({ name: 'TPM_Startup', ordinal: ORD.Startup, params: Buffer.from([type >> 8, type & 0xff]) });
  }

  async saveState(): Promise<void> {
    await this.run({ name: 'TPM_SaveState', ordinal: ORD.SaveState });
  }

  async getCapability(capArea: number, subCap: Buffer = Buffer.alloc(0)): Promise<Buffer> {
    const { reader } = await this.run({ name: 'TPM_GetCapability', ordinal: ORD.GetCapability, params: Buffer.concat([u32be(capArea), enc(bytes32(), subCap)]) });
    return read(bytes32(), reader);
  }

  async getProperty(prop: number): Promise<number> {
    return (await this.getCapability(CAP.PROPERTY, u32be(prop))).readUInt32BE(0);
  }

  async permanentFlags(): Promise<PermanentFlags> {
    return permanentFlags.decode(new Reader(await this.getCapability(CAP.FLAG, u32be(0x108))));
  }

  async stclearFlags(): Promise<StclearFlags> {
    return stclearFlags.decode(new Reader(await this.getCapability(CAP.FLAG, u32be(0x109))));
  }

  async getRandom(n: number): Promise<Buffer> {
    const { reader } = await this.run({ name: 'TPM_GetRandom', ordinal: ORD.GetRandom, params: u32be(n) });
    return read(bytes32(), reader);
  }

  async extend(pcr: number, digest: Buffer): Promise<Buffer> {
    const { params } = await this.run({ name: 'TPM_Extend', ordinal: ORD.Extend, params: Buffer.concat([u32be(pcr), digest]) });
    return params;
  }

  async pcrRead(pcr: number): Promise<Buffer> {
    return (await this.run({ name: 'TPM_PCRRead', ordinal: ORD.PCRRead, params: u32be(pcr) })).params;
  }

  async pcrReset(pcrs: readonly number[]): Promise<void> {
    const sel = selectionOf(pcrs);
    await this.run({ name: 'TPM_PCR_Reset', ordinal: ORD.PCR_Reset, params: new Writer(8).u16(sel.length).bytes(sel).finish() });
  }

  // Physical presence and enablement

  async physicalPresence(bits: number): Promise<void> {
    await this.run({ name: 'TSC_PhysicalPresence', ordinal: ORD.TSC_PhysicalPresence, params: Buffer.from([bits >> 8, bits & 0xff]) });
  }

  async physicalEnable(): Promise<void> {
    await this.run({ name: 'TPM_PhysicalEnable', ordinal: ORD.PhysicalEnable });
  }

  async physicalSetDeactivated(state: boolean): Promise<void> {
    await this.run({ name: 'TPM_PhysicalSetDeactivated', ordinal: ORD.PhysicalSetDeactivated, params: enc(bool, state) });
  }

  // Endorsement key and ownership

  async readPubek(antiReplay = this.random(20)): Promise<PubKey> {
    const { reader } = await this.run({ name: 'TPM_ReadPubek', ordinal: ORD.ReadPubek, params: antiReplay });
    const ek = read(pubkey, reader);
    const checksum = Buffer.from(reader.bytes(20));
    if (!checksum.equals(sha1(enc(pubkey, ek), antiReplay))) throw new Error('TPM_ReadPubek: checksum does not match');
    return ek;
  }

  async createEndorsementKeyPair(antiReplay = this.random(20)): Promise<PubKey> {
    const parms = { algorithmID: 1, encScheme: ES.RSAESOAEP_SHA1_MGF1, sigScheme: SS.NONE, parms: enc(rsaKeyParms, { keyLength: 2048, numPrimes: 2, exponent: Buffer.alloc(0) }) };
    const { reader } = await this.run({ name: 'TPM_CreateEndorsementKeyPair', ordinal: ORD.CreateEndorsementKeyPair, params: Buffer.concat([antiReplay, enc(keyParms, parms)]) });
    return read(pubkey, reader);
  }

  /** TPM_TakeOwnership: both auth values are encrypted to the EK; returns the SRK's public TPM_KEY. */
  async takeOwnership(ownerAuth: Buffer, srkAuth: Buffer, ek?: PubKey): Promise<Key> {
    const ekPub = ek ?? (await this.readPubek());
    const encOwner = encryptTcpa(ekPub, ownerAuth, this.random);
    const encSrk = encryptTcpa(ekPub, srkAuth, this.random);
    const srkParams = keyTemplate({ usage: KEY_USAGE.STORAGE });
    const params = Buffer.concat([Buffer.from([PID.OWNER >> 8, PID.OWNER & 0xff]), enc(bytes32(), encOwner), enc(bytes32(), encSrk), enc(key, srkParams)]);
    const { reader } = await this.run({ name: 'TPM_TakeOwnership', ordinal: ORD.TakeOwnership, params, auths: [{ session: await this.oiap(), auth: ownerAuth }] });
    return read(key, reader);
  }

  async ownerClear(ownerAuth: Buffer): Promise<void> {
    await this.run({ name: 'TPM_OwnerClear', ordinal: ORD.OwnerClear, auths: await this.oiapAuth(ownerAuth) });
  }

  // Keys

  private async keyOsap(handle: number, auth: Buffer): Promise<ClientSession> {
    return handle === KH.SRK ? this.osap(ET.SRK, KH.SRK, auth) : this.osap(ET.KEYHANDLE, handle, auth);
  }

  /** TPM_CreateWrapKey under a loaded storage key; returns the wrapped TPM_KEY12. */
  async createWrapKey(parent: number, parentAuth: Buffer, template: KeyTemplate, usageAuth: Buffer, migrationAuth: Buffer = Buffer.alloc(20)): Promise<Key> {
    const s = await this.keyOsap(parent, parentAuth);
    const params = Buffer.concat([s.encryptAuth(usageAuth), s.encryptAuth(migrationAuth, true), enc(key, keyTemplate(template))]);
    const { reader } = await this.run({ name: 'TPM_CreateWrapKey', ordinal: ORD.CreateWrapKey, handles: [parent], params, auths: [{ session: s, auth: parentAuth }] });
    return read(key, reader);
  }

  async loadKey2(parent: number, parentAuth: Buffer | null, k: Key): Promise<number> {
    const r = await this.run({ name: 'TPM_LoadKey2', ordinal: ORD.LoadKey2, handles: [parent], params: enc(key, k), auths: await this.oiapAuth(parentAuth), responseHandle: true });
    return r.handle!;
  }

  async getPubKey(handle: number, auth: Buffer | null): Promise<PubKey> {
    const { reader } = await this.run({ name: 'TPM_GetPubKey', ordinal: ORD.GetPubKey, handles: [handle], auths: await this.oiapAuth(auth) });
    return read(pubkey, reader);
  }

  async flushSpecific(handle: number, resourceType: number = RT.KEY): Promise<void> {
    await this.run({ name: 'TPM_FlushSpecific', ordinal: ORD.FlushSpecific, params: Buffer.concat([u32be(handle), u32be(resourceType)]) });
  }

  async sign(handle: number, auth: Buffer | null, areaToSign: Buffer): Promise<Buffer> {
    const { reader } = await this.run({ name: 'TPM_Sign', ordinal: ORD.Sign, handles: [handle], params: enc(bytes32(), areaToSign), auths: await this.oiapAuth(auth) });
    return read(bytes32(), reader);
  }

  // Sealing

  /** TPM_Seal to a storage key, bound to `pcrInfo` (TPM_PCR_INFO_LONG, or empty for no binding). */
  async seal(keyHandle: number, keyAuth: Buffer, dataAuth: Buffer, data: Buffer, pcrInfo: Buffer = Buffer.alloc(0)): Promise<StoredData> {
    const s = await this.keyOsap(keyHandle, keyAuth);
    const params = Buffer.concat([s.encryptAuth(dataAuth), enc(bytes32(), pcrInfo), enc(bytes32(), data)]);
    const { reader } = await this.run({ name: 'TPM_Seal', ordinal: ORD.Seal, handles: [keyHandle], params, auths: [{ session: s, auth: keyAuth }] });
    return read(storedData, reader);
  }

  async unseal(keyHandle: number, keyAuth: Buffer | null, dataAuth: Buffer, blob: StoredData): Promise<Buffer> {
    const auths = [...(await this.oiapAuth(keyAuth)), { session: await this.oiap(), auth: dataAuth }];
    const { reader } = await this.run({ name: 'TPM_Unseal', ordinal: ORD.Unseal, handles: [keyHandle], params: enc(storedData, blob), auths });
    return read(bytes32(), reader);
  }

  // Attestation

  async quote(keyHandle: number, keyAuth: Buffer | null, externalData: Buffer, pcrs: readonly number[]): Promise<QuoteResult> {
    const sel = selectionOf(pcrs);
    const params = new Writer(32).bytes(externalData).u16(sel.length).bytes(sel).finish();
    const { reader } = await this.run({ name: 'TPM_Quote', ordinal: ORD.Quote, handles: [keyHandle], params, auths: await this.oiapAuth(keyAuth) });
    const composite = read(pcrComposite, reader);
    const sig = read(bytes32(), reader);
    const signed = enc(quoteInfo, { version: STRUCT_VER_11, fixed: Buffer.from('QUOT'), digestValue: sha1(enc(pcrComposite, composite)), externalData });
    return { pcrValues: composite.values, signed, sig };
  }

  async quote2(keyHandle: number, keyAuth: Buffer | null, externalData: Buffer, pcrs: readonly number[], addVersion = false): Promise<Quote2Result> {
    const sel = selectionOf(pcrs);
    const params = new Writer(32).bytes(externalData).u16(sel.length).bytes(sel).u8(addVersion ? 1 : 0).finish();
    const { reader } = await this.run({ name: 'TPM_Quote2', ordinal: ORD.Quote2, handles: [keyHandle], params, auths: await this.oiapAuth(keyAuth) });
    const pcrData = read(pcrInfoShort, reader);
    const versionInfo = read(bytes32(), reader);
    const sig = read(bytes32(), reader);
    const signed = Buffer.concat([enc(quoteInfo2, { tag: STAG.QUOTE_INFO2, fixed: Buffer.from('QUT2'), externalData, infoShort: pcrData }), versionInfo]);
    return { pcrData, versionInfo, signed, sig };
  }

  /** TPM_CertifyKey: the certify info (TPM_CERTIFY_INFO or _INFO2, as the TPM chose) and its signature. */
  async certifyKey(certHandle: number, certAuth: Buffer | null, keyHandle: number, keyAuth: Buffer | null, antiReplay: Buffer): Promise<{ certifyInfo: Buffer; sig: Buffer }> {
    const auths = [...(await this.oiapAuth(certAuth)), ...(await this.oiapAuth(keyAuth))];
    const { params, reader } = await this.run({ name: 'TPM_CertifyKey', ordinal: ORD.CertifyKey, handles: [certHandle, keyHandle], params: antiReplay, auths });
    (params.readUInt16BE(0) === STAG.CERTIFY_INFO2 ? certifyInfo2 : certifyInfo).decode(reader);
    const infoEnd = reader.offset;
    return { certifyInfo: params.subarray(0, infoEnd), sig: read(bytes32(), reader) };
  }

  // Identities

  /** TPM_MakeIdentity: an AIK wrapped by the SRK and its binding (signature over TPM_IDENTITY_CONTENTS). */
  async makeIdentity(ownerAuth: Buffer, srkAuth: Buffer | null, identityAuth: Buffer, labelPrivCADigest: Buffer): Promise<{ idKey: Key; identityBinding: Buffer }> {
    const s = await this.osap(ET.OWNER, KH.OWNER, ownerAuth);
    const params = Buffer.concat([s.encryptAuth(identityAuth), labelPrivCADigest, enc(key, keyTemplate({ usage: KEY_USAGE.IDENTITY }))]);
    const auths = [...(await this.oiapAuth(srkAuth)), { session: s, auth: ownerAuth }];
    const { reader } = await this.run({ name: 'TPM_MakeIdentity', ordinal: ORD.MakeIdentity, params, auths });
    return { idKey: read(key, reader), identityBinding: read(bytes32(), reader) };
  }

  async activateIdentity(idKeyHandle: number, idKeyAuth: Buffer, ownerAuth: Buffer, blob: Buffer): Promise<SymmetricKey> {
    const auths = [{ session: await this.oiap(), auth: idKeyAuth }, { session: await this.oiap(), auth: ownerAuth }];
    const { reader } = await this.run({ name: 'TPM_ActivateIdentity', ordinal: ORD.ActivateIdentity, handles: [idKeyHandle], params: enc(bytes32(), blob), auths });
    return read(symmetricKey, reader);
  }

  // Counters, DIR, NV

  async createCounter(ownerAuth: Buffer, counterAuth: Buffer, label: Buffer): Promise<{ countID: number; value: CounterValue }> {
    const s = await this.osap(ET.OWNER, KH.OWNER, ownerAuth);
    const { reader } = await this.run({ name: 'TPM_CreateCounter', ordinal: ORD.CreateCounter, params: Buffer.concat([s.encryptAuth(counterAuth), label]), auths: [{ session: s, auth: ownerAuth }] });
    return { countID: reader.u32(), value: read(counterValue, reader) };
  }

  async incrementCounter(countID: number, counterAuth: Buffer): Promise<CounterValue> {
    const { reader } = await this.run({ name: 'TPM_IncrementCounter', ordinal: ORD.IncrementCounter, params: u32be(countID), auths: await this.oiapAuth(counterAuth) });
    return read(counterValue, reader);
  }

  async readCounter(countID: number): Promise<CounterValue> {
    const { reader } = await this.run({ name: 'TPM_ReadCounter', ordinal: ORD.ReadCounter, params: u32be(countID) });
    return read(counterValue, reader);
  }

  async dirWriteAuth(ownerAuth: Buffer, dirIndex: number, value: Buffer): Promise<void> {
    await this.run({ name: 'TPM_DirWriteAuth', ordinal: ORD.DirWriteAuth, params: Buffer.concat([u32be(dirIndex), value]), auths: await this.oiapAuth(ownerAuth) });
  }

  async dirRead(dirIndex: number): Promise<Buffer> {
    return (await this.run({ name: 'TPM_DirRead', ordinal: ORD.DirRead, params: u32be(dirIndex) })).params;
  }

  /** TPM_NV_DefineSpace, owner-authorized (ADIP for the area's auth) or, while NV is unlocked, without. */
  async nvDefineSpace(pub: NvDataPublic, areaAuth: Buffer, ownerAuth: Buffer | null): Promise<void> {
    if (!ownerAuth) {
      await this.run({ name: 'TPM_NV_DefineSpace', ordinal: ORD.NV_DefineSpace, params: Buffer.concat([enc(nvDataPublic, pub), areaAuth]) });
      return;
    }
    const s = await this.osap(ET.OWNER, KH.OWNER, ownerAuth);
    await this.run({ name: 'TPM_NV_DefineSpace', ordinal: ORD.NV_DefineSpace, params: Buffer.concat([enc(nvDataPublic, pub), s.encryptAuth(areaAuth)]), auths: [{ session: s, auth: ownerAuth }] });
  }

  async nvWriteValue(index: number, offset: number, data: Buffer, ownerAuth: Buffer | null): Promise<void> {
    await this.run({ name: 'TPM_NV_WriteValue', ordinal: ORD.NV_WriteValue, params: Buffer.concat([u32be(index), u32be(offset), enc(bytes32(), data)]), auths: await this.oiapAuth(ownerAuth) });
  }

  async nvWriteValueAuth(index: number, offset: number, data: Buffer, areaAuth: Buffer): Promise<void> {
    await this.run({ name: 'TPM_NV_WriteValueAuth', ordinal: ORD.NV_WriteValueAuth, params: Buffer.concat([u32be(index), u32be(offset), enc(bytes32(), data)]), auths: await this.oiapAuth(areaAuth) });
  }

  async nvReadValue(index: number, offset: number, size: number, ownerAuth: Buffer | null): Promise<Buffer> {
    const { reader } = await this.run({ name: 'TPM_NV_ReadValue', ordinal: ORD.NV_ReadValue, params: Buffer.concat([u32be(index), u32be(offset), u32be(size)]), auths: await this.oiapAuth(ownerAuth) });
    return read(bytes32(), reader);
  }

  async nvReadValueAuth(index: number, offset: number, size: number, areaAuth: Buffer): Promise<Buffer> {
    const { reader } = await this.run({ name: 'TPM_NV_ReadValueAuth', ordinal: ORD.NV_ReadValueAuth, params: Buffer.concat([u32be(index), u32be(offset), u32be(size)]), auths: await this.oiapAuth(areaAuth) });
    return read(bytes32(), reader);
  }
}
