import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VtpmdServer, interopUnavailable, parsePcrRead, tempDir, type Tcti } from './harness.ts';

const BANKS = ['sha1', 'sha256', 'sha384', 'sha512'] as const;
const SIZES = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 } as const;

const h = (alg: string, ...parts: Buffer[]) => {
  const x = createHash(alg);
  for (const p of parts) x.update(p);
  return x.digest();
};

for (const tcti of ['swtpm', 'mssim'] as Tcti[]) {
  const skip = interopUnavailable(tcti);

  describe(`tpm2-tools over the ${tcti} TCTI`, { skip }, () => {
    const state = tempDir(`vtpmd-interop-${tcti}-`);
    const files = tempDir(`vtpmd-interop-files-${tcti}-`);
    let server: VtpmdServer;

    const restart = async () => {
      await server.stop();
      server = await VtpmdServer.start(tcti, state.path);
    };
    const pcrs = async (spec: string) => parsePcrRead(await server.tool('tpm2_pcrread', [spec]));
    const clockInfo = async () => {
      const out = await server.tool('tpm2_readclock', []);
      const num = (k: string) => BigInt(new RegExp(`${k}:\\s*(\\d+)`).exec(out)![1]!);
      return { time: num('time'), clock: num('clock'), resetCount: num('reset_count'), restartCount: num('restart_count') };
    };

    before(async () => {
      server = await VtpmdServer.start(tcti, state.path);
    });
    after(async () => {
      await server?.stop();
      state.remove();
      files.remove();
    });

    it('tpm2_startup -c starts the TPM; tpm2_selftest and tpm2_gettestresult report success', async () => {
      await server.tool('tpm2_startup', ['-c']);
      await server.tool('tpm2_selftest', ['--fulltest']);
      const out = await server.tool('tpm2_gettestresult', []);
      assert.match(out, /status:\s+success/);
    });

    it('tpm2_getrandom returns the bytes asked for, different each time', async () => {
      const a = (await server.tool('tpm2_getrandom', ['--hex', '32'])).trim();
      const b = (await server.tool('tpm2_getrandom', ['--hex', '32'])).trim();
      assert.match(a, /^[0-9a-f]{64}$/);
      assert.notEqual(a, b);
    });

    it('tpm2_stirrandom feeds entropy and the TPM keeps answering', async () => {
      await server.tool('tpm2_stirrandom', [], randomBytes(64));
      assert.match((await server.tool('tpm2_getrandom', ['--hex', '8'])).trim(), /^[0-9a-f]{16}$/);
    });

    it('tpm2_getcap answers every capability', async () => {
      const expect: Record<string, RegExp> = {
        algorithms: /sha256:[\s\S]*ecc:[\s\S]*cfb:/,
        commands: /TPM2_CC_Startup:[\s\S]*TPM2_CC_GetCapability:[\s\S]*TPM2_CC_PCR_Extend:/,
        pcrs: /sha256:\s*\[\s*0,\s*1,[\s\S]*23\s*\]/,
        'properties-fixed': /TPM2_PT_MANUFACTURER:[\s\S]*TPM2_PT_PCR_COUNT:\s*raw:\s*0x18/,
        'properties-variable': /TPM2_PT_STARTUP_CLEAR:[\s\S]*TPM2_PT_HR_TRANSIENT_AVAIL:/,
        'ecc-curves': /TPM2_ECC_NIST_P256[\s\S]*TPM2_ECC_NIST_P384/,
        'handles-pcr': /^- 0x0$[\s\S]*^- 0x17$/m,
        'handles-permanent': /^- 0x40000001$[\s\S]*^- 0x4000000C$/im,
        'handles-transient': /^\s*$/,
        'handles-persistent': /^\s*$/,
        'handles-nv-index': /^\s*$/,
        'handles-loaded-session': /^\s*$/,
        'handles-saved-session': /^\s*$/,
      };
      for (const [cap, re] of Object.entries(expect)) {
        const out = await server.tool('tpm2_getcap', [cap]);
        assert.match(out, re, `tpm2_getcap ${cap}`);
      }
    });

    it('tpm2_testparms accepts implemented parameters and refuses others', async () => {
      for (const alg of ['rsa2048', 'rsa3072', 'ecc256', 'ecc384', 'aes128cfb', 'aes256cfb', 'hmac']) {
        await server.tool('tpm2_testparms', [alg]);
      }
      for (const alg of ['rsa4096', 'ecc521']) {
        await assert.rejects(server.tool('tpm2_testparms', [alg]), `tpm2_testparms ${alg} must fail`);
      }
    });

    it('tpm2_hash computes digests, with a hash-check ticket, for short and sequence-sized input', async () => {
      for (const size of [100, 3000]) {
        const data = randomBytes(size);
        const input = join(files.path, `hash-${size}.bin`);
        const out = join(files.path, `hash-${size}.out`);
        const ticket = join(files.path, `hash-${size}.tk`);
        writeFileSync(input, data);
        for (const alg of ['sha1', 'sha256', 'sha384', 'sha512']) {
          await server.tool('tpm2_hash', ['-C', 'o', '-g', alg, '-o', out, '-t', ticket, input]);
          assert.deepEqual(readFileSync(out), h(alg, data), `${alg} of ${size} bytes`);
          // TPMT_TK_HASHCHECK: tag 0x8024, hierarchy TPM_RH_OWNER, a non-empty HMAC.
          const tk = readFileSync(ticket);
          assert.equal(tk.readUInt16BE(0), 0x8024);
          assert.equal(tk.readUInt32BE(2), 0x40000001);
          assert.ok(tk.readUInt16BE(6) > 0);
        }
      }
    });

    it('tpm2_pcrextend extends each bank: PCR = H(old || digest)', async () => {
      await server.tool('tpm2_pcrreset', ['16']);
      const digests = Object.fromEntries(BANKS.map((b) => [b, randomBytes(SIZES[b])]));
      await server.tool('tpm2_pcrextend', [`16:${BANKS.map((b) => `${b}=${digests[b]!.toString('hex')}`).join(',')}`]);
      const read = await pcrs('sha1:16+sha256:16+sha384:16+sha512:16');
      for (const b of BANKS) {
        assert.equal(read.get(b)!.get(16), h(b, Buffer.alloc(SIZES[b]), digests[b]!).toString('hex'), b);
      }
    });

    it('tpm2_pcrevent extends every bank with the event digest, short and long events', async () => {
      for (const size of [64, 2500]) {
        await server.tool('tpm2_pcrreset', ['23']);
        const data = randomBytes(size);
        const file = join(files.path, `event-${size}.bin`);
        writeFileSync(file, data);
        await server.tool('tpm2_pcrevent', ['23', file]);
        const read = await pcrs('sha1:23+sha256:23+sha384:23+sha512:23');
        for (const b of BANKS) {
          assert.equal(read.get(b)!.get(23), h(b, Buffer.alloc(SIZES[b]), h(b, data)).toString('hex'), `${b}, ${size} bytes`);
        }
      }
    });

    it('tpm2_pcrread reads PCRs 17-22 as all ones after power-on and 0-15 as zeros', async () => {
      const read = await pcrs('sha256:0,17,22');
      assert.equal(read.get('sha256')!.get(0), '00'.repeat(32));
      assert.equal(read.get('sha256')!.get(17), 'ff'.repeat(32));
      assert.equal(read.get('sha256')!.get(22), 'ff'.repeat(32));
    });

    it('tpm2_pcrreset resets the resettable PCRs 16 and 23 but not PCR 0', async () => {
      await server.tool('tpm2_pcrextend', [`16:sha256=${'11'.repeat(32)}`]);
      await server.tool('tpm2_pcrreset', ['16']);
      assert.equal((await pcrs('sha256:16')).get('sha256')!.get(16), '00'.repeat(32));
      await assert.rejects(server.tool('tpm2_pcrreset', ['0']), /0x907|locality/i);
    });

    it('tpm2_readclock, tpm2_setclock and tpm2_clockrateadjust work; the clock never goes back', async () => {
      const before = await clockInfo();
      const target = before.clock + 10_000_000n;
      await server.tool('tpm2_setclock', [target.toString()]);
      const after = await clockInfo();
      assert.ok(after.clock >= target, `clock ${after.clock} >= ${target}`);
      await assert.rejects(server.tool('tpm2_setclock', [(before.clock).toString()]));
      for (const rate of ['s', 'ss', 'sss', 'f', 'ff', 'fff']) await server.tool('tpm2_clockrateadjust', [rate]);
    });

    it('a restart keeps what a TPM keeps: Shutdown(STATE) then Startup(STATE) restores PCR 0 but not PCR 16', async () => {
      const d = randomBytes(32);
      await server.tool('tpm2_pcrextend', [`0:sha256=${d.toString('hex')}`]);
      await server.tool('tpm2_pcrextend', [`16:sha256=${d.toString('hex')}`]);
      const pcr0 = (await pcrs('sha256:0')).get('sha256')!.get(0);
      const clockBefore = await clockInfo();
      await server.tool('tpm2_shutdown', []);
      await restart();
      await server.tool('tpm2_startup', []);
      const read = await pcrs('sha256:0,16');
      assert.equal(read.get('sha256')!.get(0), pcr0);
      assert.equal(read.get('sha256')!.get(16), '00'.repeat(32));
      const c = await clockInfo();
      assert.equal(c.resetCount, clockBefore.resetCount);
      assert.equal(c.restartCount, clockBefore.restartCount + 1n);
      assert.ok(c.clock >= clockBefore.clock);
    });

    it('a restart after Shutdown(CLEAR) is a TPM Reset: PCRs cleared, resetCount incremented', async () => {
      const before = await clockInfo();
      await server.tool('tpm2_shutdown', ['-c']);
      await restart();
      await server.tool('tpm2_startup', ['-c']);
      assert.equal((await pcrs('sha256:0')).get('sha256')!.get(0), '00'.repeat(32));
      const c = await clockInfo();
      assert.equal(c.resetCount, before.resetCount + 1n);
      assert.equal(c.restartCount, 0n);
      assert.ok(c.clock >= before.clock);
    });

    it('tpm2_pcrallocate takes effect at the next power cycle and persists', async () => {
      await server.tool('tpm2_pcrallocate', ['sha1:none+sha256:all+sha384:all+sha512:all']);
      assert.match(await server.tool('tpm2_getcap', ['pcrs']), /sha1:\s*\[\s*0,/, 'unchanged before the reset');
      await server.tool('tpm2_shutdown', ['-c']);
      await restart();
      await server.tool('tpm2_startup', ['-c']);
      const caps = await server.tool('tpm2_getcap', ['pcrs']);
      assert.match(caps, /sha1:\s*\[\s*\]/);
      assert.match(caps, /sha256:\s*\[\s*0,/);
      await server.tool('tpm2_pcrallocate', ['sha1:all+sha256:all+sha384:all+sha512:all']);
    });
  });
}
