/**
 * NV storage driven by Debian's tpm2-tools over both TCTIs: define, write, read, read-public,
 * increment, extend, set-bits, the locks and undefine, with owner and index authorization,
 * HMAC sessions with parameter encryption; data read back and extend digests are checked against
 * values computed here.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VtpmdServer, interopUnavailable, tempDir, type Tcti } from './harness.ts';

const h = (alg: string, ...parts: Buffer[]) => {
  const x = createHash(alg);
  for (const p of parts) x.update(p);
  return x.digest();
};

const ALG_ID: Record<string, number> = { sha1: 0x0004, sha256: 0x000b, sha384: 0x000c, sha512: 0x000d };

/** nameAlg || H(TPMS_NV_PUBLIC) for an index without authPolicy. */
function nvName(index: number, alg: string, attributes: number, size: number): string {
  const body = Buffer.alloc(14);
  body.writeUInt32BE(index, 0);
  body.writeUInt16BE(ALG_ID[alg]!, 4);
  body.writeUInt32BE(attributes >>> 0, 6);
  body.writeUInt16BE(0, 10);
  body.writeUInt16BE(size, 12);
  const id = Buffer.alloc(2);
  id.writeUInt16BE(ALG_ID[alg]!);
  return Buffer.concat([id, h(alg, body)]).toString('hex');
}

/** What tpm2_nvreadpublic prints for one index. */
function parseReadPublic(out: string): { name: string; attributes: number; size: number } {
  const name = /name:\s*([0-9a-fA-F]+)/.exec(out)?.[1];
  const attributes = /attributes:[\s\S]*?value:\s*0x([0-9a-fA-F]+)/.exec(out)?.[1];
  const size = /size:\s*(\d+)/.exec(out)?.[1];
  assert.ok(name && attributes && size, `unexpected tpm2_nvreadpublic output:\n${out}`);
  return { name: name.toLowerCase(), attributes: parseInt(attributes, 16), size: Number(size) };
}

const WRITTEN = 1 << 29;
const WRITELOCKED = 1 << 11;
const READLOCKED = 1 << 28;

for (const tcti of ['swtpm', 'mssim'] as Tcti[]) {
  const skip = interopUnavailable(tcti);

  describe(`NV storage with tpm2-tools over the ${tcti} TCTI`, { skip }, () => {
    const state = tempDir(`vtpmd-nv-${tcti}-`);
    const files = tempDir(`vtpmd-nv-files-${tcti}-`);
    let server: VtpmdServer;
    let n = 0;
    const file = (data?: Buffer) => {
      const p = join(files.path, `f${n++}.bin`);
      if (data) writeFileSync(p, data);
      return p;
    };
    const tool = (cmd: string, args: string[], input?: Buffer) => server.tool(cmd, args, input);
    /** tpm2_nvread into a file (stdout is text), returning the bytes. */
    const nvread = async (index: string, args: string[] = []) => {
      const out = file();
      await tool('tpm2_nvread', [index, '-o', out, ...args]);
      return readFileSync(out);
    };
    const readPublic = async (index: string) => parseReadPublic(await tool('tpm2_nvreadpublic', [index]));

    before(async () => {
      server = await VtpmdServer.start(tcti, state.path);
      await tool('tpm2_startup', ['-c']);
    });
    after(async () => {
      await server?.stop();
      state.remove();
      files.remove();
    });

    it('tpm2_nvdefine/nvwrite/nvread with owner authorization: data read back equals data written', async () => {
      await tool('tpm2_nvdefine', ['0x1500001', '-C', 'o', '-s', '100', '-a', 'ownerread|ownerwrite']);
      const data = randomBytes(100);
      await tool('tpm2_nvwrite', ['0x1500001', '-C', 'o', '-i', file(data)]);
      assert.deepEqual(await nvread('0x1500001', ['-C', 'o']), data);
      const patch = randomBytes(10);
      await tool('tpm2_nvwrite', ['0x1500001', '-C', 'o', '--offset', '40', '-i', file(patch)]);
      data.set(patch, 40);
      assert.deepEqual(await nvread('0x1500001', ['-C', 'o']), data);
      assert.deepEqual(await nvread('0x1500001', ['-C', 'o', '-s', '20', '--offset', '35']), data.subarray(35, 55));
    });

    it('tpm2_nvreadpublic reports the attributes (WRITTEN set), size and a Name computed independently', async () => {
      const pub = await readPublic('0x1500001');
      assert.equal(pub.attributes, (0x00020002 | WRITTEN) >>> 0); // OWNERREAD | OWNERWRITE | WRITTEN
      assert.equal(pub.size, 100);
      assert.equal(pub.name, nvName(0x1500001, 'sha256', pub.attributes, 100));
    });

    it('index authorization (-p / -P): the index password reads and writes; a wrong one and the owner are refused', async () => {
      await tool('tpm2_nvdefine', ['0x1500002', '-C', 'o', '-s', '32', '-a', 'authread|authwrite|no_da', '-p', 'indexpass']);
      const data = randomBytes(32);
      await tool('tpm2_nvwrite', ['0x1500002', '-P', 'indexpass', '-i', file(data)]);
      assert.deepEqual(await nvread('0x1500002', ['-P', 'indexpass']), data);
      await assert.rejects(nvread('0x1500002', ['-P', 'wrong']), /0x9a2|authorization HMAC check failed/i);
      await assert.rejects(nvread('0x1500002', ['-C', 'o']), /0x149|authorization fails/i);
      await assert.rejects(tool('tpm2_nvwrite', ['0x1500002', '-C', 'o', '-i', file(data)]), /0x149|authorization fails/i);
    });

    it('an index of the default size (TPM_PT_NV_INDEX_MAX, 2048) is written and read in NV_BUFFER_MAX chunks', async () => {
      await tool('tpm2_nvdefine', ['0x1500003', '-C', 'o', '-a', 'ownerread|ownerwrite']);
      assert.equal((await readPublic('0x1500003')).size, 2048);
      const data = randomBytes(2048);
      await tool('tpm2_nvwrite', ['0x1500003', '-C', 'o', '-i', file(data)]);
      assert.deepEqual(await nvread('0x1500003', ['-C', 'o']), data);
    });

    it('reading an index never written fails with TPM_RC_NV_UNINITIALIZED; data past the end with TPM_RC_NV_RANGE', async () => {
      await tool('tpm2_nvdefine', ['0x1500004', '-C', 'o', '-s', '8', '-a', 'ownerread|ownerwrite']);
      await assert.rejects(nvread('0x1500004', ['-C', 'o', '-s', '8']), /0x14a|uninitialized/i);
      await assert.rejects(tool('tpm2_nvwrite', ['0x1500004', '-C', 'o', '--offset', '4', '-i', file(randomBytes(8))]));
    });

    it('tpm2_nvincrement counts 1, 2, 3 (8 bytes, big-endian), with owner and with index authorization', async () => {
      await tool('tpm2_nvdefine', ['0x1500010', '-C', 'o', '-a', 'ownerread|ownerwrite|authread|authwrite|nt=counter', '-p', 'ctr']);
      await tool('tpm2_nvincrement', ['0x1500010', '-C', 'o']);
      assert.equal((await nvread('0x1500010', ['-C', 'o'])).readBigUInt64BE(0), 1n);
      await tool('tpm2_nvincrement', ['0x1500010', '-P', 'ctr']);
      await tool('tpm2_nvincrement', ['0x1500010', '-C', 'o']);
      const v = await nvread('0x1500010', ['-P', 'ctr']);
      assert.equal(v.length, 8);
      assert.equal(v.readBigUInt64BE(0), 3n);
    });

    it('tpm2_nvextend: the index holds H(H(0…0 || a) || b) for SHA-256 and SHA-1 name algorithms', async () => {
      for (const [index, alg, size] of [
        ['0x1500011', 'sha256', 32],
        ['0x1500012', 'sha1', 20],
      ] as const) {
        await tool('tpm2_nvdefine', [index, '-C', 'o', '-g', alg, '-a', 'ownerread|ownerwrite|nt=extend']);
        const a = randomBytes(40);
        const b = randomBytes(700);
        await tool('tpm2_nvextend', [index, '-C', 'o', '-i', file(a)]);
        assert.deepEqual(await nvread(index, ['-C', 'o']), h(alg, Buffer.alloc(size), a), alg);
        await tool('tpm2_nvextend', [index, '-C', 'o', '-i', file(b)]);
        assert.deepEqual(await nvread(index, ['-C', 'o']), h(alg, h(alg, Buffer.alloc(size), a), b), alg);
        assert.equal((await readPublic(index)).size, size);
      }
    });

    it('tpm2_nvsetbits ORs bits into a bit field', async () => {
      await tool('tpm2_nvdefine', ['0x1500013', '-C', 'o', '-a', 'ownerread|ownerwrite|nt=bits']);
      await tool('tpm2_nvsetbits', ['0x1500013', '-C', 'o', '-i', '0x5']);
      await tool('tpm2_nvsetbits', ['0x1500013', '-C', 'o', '-i', '0x8000000000000030']);
      assert.equal((await nvread('0x1500013', ['-C', 'o'])).readBigUInt64BE(0), 0x8000000000000035n);
    });

    it('tpm2_nvreadlock blocks reads with TPM_RC_NV_LOCKED and sets READLOCKED', async () => {
      await tool('tpm2_nvdefine', ['0x1500020', '-C', 'o', '-s', '8', '-a', 'ownerread|ownerwrite|read_stclear']);
      const data = randomBytes(8);
      await tool('tpm2_nvwrite', ['0x1500020', '-C', 'o', '-i', file(data)]);
      await tool('tpm2_nvreadlock', ['0x1500020', '-C', 'o']);
      await assert.rejects(nvread('0x1500020', ['-C', 'o']), /0x148|locked/i);
      assert.ok((await readPublic('0x1500020')).attributes & READLOCKED);
      await tool('tpm2_nvwrite', ['0x1500020', '-C', 'o', '-i', file(data)]);
    });

    it('tpm2_nvwritelock blocks writes with TPM_RC_NV_LOCKED; reads still work', async () => {
      await tool('tpm2_nvdefine', ['0x1500021', '-C', 'o', '-s', '8', '-a', 'ownerread|ownerwrite|write_stclear']);
      const data = randomBytes(8);
      await tool('tpm2_nvwrite', ['0x1500021', '-C', 'o', '-i', file(data)]);
      await tool('tpm2_nvwritelock', ['0x1500021', '-C', 'o']);
      await assert.rejects(tool('tpm2_nvwrite', ['0x1500021', '-C', 'o', '-i', file(randomBytes(8))]), /0x148|locked/i);
      assert.deepEqual(await nvread('0x1500021', ['-C', 'o']), data);
      assert.ok((await readPublic('0x1500021')).attributes & WRITELOCKED);
    });

    it('tpm2_nvwritelock --global locks the GLOBALLOCK indices only', async () => {
      await tool('tpm2_nvdefine', ['0x1500022', '-C', 'o', '-s', '8', '-a', 'ownerread|ownerwrite|globallock']);
      await tool('tpm2_nvdefine', ['0x1500023', '-C', 'o', '-s', '8', '-a', 'ownerread|ownerwrite']);
      await tool('tpm2_nvwritelock', ['--global', '-C', 'o']);
      await assert.rejects(tool('tpm2_nvwrite', ['0x1500022', '-C', 'o', '-i', file(randomBytes(8))]), /0x148|locked/i);
      await tool('tpm2_nvwrite', ['0x1500023', '-C', 'o', '-i', file(randomBytes(8))]);
    });

    it('an HMAC session with parameter encryption carries NV_Write and NV_Read (Names include WRITTEN)', async () => {
      const session = file();
      await tool('tpm2_nvdefine', ['0x1500030', '-C', 'o', '-s', '64', '-a', 'authread|authwrite', '-p', 'encpass']);
      await tool('tpm2_startauthsession', ['--hmac-session', '-S', session]);
      try {
        await tool('tpm2_sessionconfig', [session, '--enable-encrypt', '--enable-decrypt', '--enable-continuesession']);
        const data = randomBytes(64);
        await tool('tpm2_nvwrite', ['0x1500030', '-P', 'encpass', '-S', session, '-i', file(data)]);
        assert.deepEqual(await nvread('0x1500030', ['-P', 'encpass', '-S', session]), data);
      } finally {
        await tool('tpm2_flushcontext', [session]);
      }
    });

    it('an HMAC session authorizes an index with an empty authValue (-P session:…)', async () => {
      const session = file();
      await tool('tpm2_nvdefine', ['0x1500031', '-C', 'o', '-a', 'authread|authwrite|nt=counter']);
      await tool('tpm2_startauthsession', ['--hmac-session', '-S', session]);
      try {
        await tool('tpm2_nvincrement', ['0x1500031', '-P', `session:${session}`]);
        await tool('tpm2_nvincrement', ['0x1500031', '-P', `session:${session}`]);
        assert.equal((await nvread('0x1500031', ['-P', `session:${session}`])).readBigUInt64BE(0), 2n);
      } finally {
        await tool('tpm2_flushcontext', [session]);
      }
    });

    it('tpm2_getcap handles-nv-index lists the indices; tpm2_nvundefine removes one', async () => {
      const before = await tool('tpm2_getcap', ['handles-nv-index']);
      assert.match(before, /^- 0x1500001$/m);
      assert.match(before, /^- 0x1500031$/m);
      await tool('tpm2_nvundefine', ['0x1500001', '-C', 'o']);
      assert.doesNotMatch(await tool('tpm2_getcap', ['handles-nv-index']), /^- 0x1500001$/m);
      await assert.rejects(tool('tpm2_nvreadpublic', ['0x1500001']), /0x18b|handle/i);
      await tool('tpm2_nvdefine', ['0x1500001', '-C', 'o', '-s', '4', '-a', 'ownerread|ownerwrite']);
    });

    it('indices and their data persist across a server restart', async () => {
      const before = await nvread('0x1500002', ['-P', 'indexpass']);
      await tool('tpm2_shutdown', ['-c']);
      await server.stop();
      server = await VtpmdServer.start(tcti, state.path);
      await tool('tpm2_startup', ['-c']);
      assert.deepEqual(await nvread('0x1500002', ['-P', 'indexpass']), before);
      assert.equal((await nvread('0x1500010', ['-C', 'o'])).readBigUInt64BE(0), 3n);
    });

    it('TPM Reset ends read locks, write locks and the global lock', async () => {
      const data = randomBytes(8);
      await tool('tpm2_nvwrite', ['0x1500021', '-C', 'o', '-i', file(data)]);
      await tool('tpm2_nvwrite', ['0x1500022', '-C', 'o', '-i', file(data)]);
      assert.equal((await nvread('0x1500020', ['-C', 'o'])).length, 8);
    });
  });
}
