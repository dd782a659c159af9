/**
 * Hierarchy and dictionary-attack commands driven by tpm2-tools over both TCTIs: changeauth,
 * clear, clearcontrol, hierarchycontrol, setprimarypolicy, changeeps, changepps and
 * dictionarylockout, with their effects read back through tpm2_getcap.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VtpmdServer, interopUnavailable, parseVariables, tempDir, type Tcti } from './harness.ts';

for (const tcti of ['swtpm', 'mssim'] as Tcti[]) {
  const skip = interopUnavailable(tcti);

  describe(`hierarchy and dictionary-attack commands with tpm2-tools over the ${tcti} TCTI`, { skip }, () => {
    const state = tempDir(`vtpmd-hier-${tcti}-`);
    const files = tempDir(`vtpmd-hier-files-${tcti}-`);
    let server: VtpmdServer;
    const file = (name: string) => join(files.path, name);

    const tool = (cmd: string, ...args: string[]) => server.tool(cmd, args);
    const vars = async () => parseVariables(await tool('tpm2_getcap', 'properties-variable'));
    const persistentHandles = async () =>
      (await tool('tpm2_getcap', 'handles-persistent'))
        .split('\n')
        .map((l) => /^-\s*(0x[0-9a-f]+)/i.exec(l)?.[1]?.toLowerCase())
        .filter((h): h is string => h !== undefined);
    /** A TPM Reset: orderly shutdown, the server process restarted on the same state, Startup(CLEAR). */
    const reset = async () => {
      await tool('tpm2_shutdown', '-c');
      await server.stop();
      server = await VtpmdServer.start(tcti, state.path);
      await tool('tpm2_startup', '-c');
    };
    /** A primary ECC key of a hierarchy made persistent at `handle`. */
    const persistPrimary = async (hierarchy: 'o' | 'e' | 'p', handle: string) => {
      const ctx = file(`primary-${hierarchy}-${handle}.ctx`);
      await tool('tpm2_createprimary', '-C', hierarchy, '-G', 'ecc', '-c', ctx);
      await tool('tpm2_evictcontrol', '-C', hierarchy === 'p' ? 'p' : 'o', '-c', ctx, handle);
      await tool('tpm2_flushcontext', '-t');
    };

    before(async () => {
      server = await VtpmdServer.start(tcti, state.path);
      await tool('tpm2_startup', '-c');
    });
    after(async () => {
      await server?.stop();
      state.remove();
      files.remove();
    });

    it('tpm2_changeauth sets and removes the owner, endorsement and lockout authValues; TPM_PT_PERMANENT shows them', async () => {
      await tool('tpm2_changeauth', '-c', 'owner', 'owner-pw');
      await tool('tpm2_changeauth', '-c', 'endorsement', 'endorsement-pw');
      await tool('tpm2_changeauth', '-c', 'lockout', 'lockout-pw');
      let v = await vars();
      assert.deepEqual([v.get('ownerAuthSet'), v.get('endorsementAuthSet'), v.get('lockoutAuthSet')], ['1', '1', '1']);
      await assert.rejects(tool('tpm2_changeauth', '-c', 'owner', '-p', 'wrong', 'x'), /0x9A2/);
      await assert.rejects(tool('tpm2_changeauth', '-c', 'endorsement', 'x'), /0x9A2/);
      await tool('tpm2_changeauth', '-c', 'owner', '-p', 'owner-pw');
      await tool('tpm2_changeauth', '-c', 'endorsement', '-p', 'endorsement-pw');
      await tool('tpm2_changeauth', '-c', 'lockout', '-p', 'lockout-pw');
      v = await vars();
      assert.deepEqual([v.get('ownerAuthSet'), v.get('endorsementAuthSet'), v.get('lockoutAuthSet')], ['0', '0', '0']);
    });

    it('tpm2_changeauth -c platform sets platformAuth until the next TPM Reset', async () => {
      await tool('tpm2_changeauth', '-c', 'platform', 'platform-pw');
      await assert.rejects(tool('tpm2_changepps'), /0x9A2/);
      await tool('tpm2_changepps', '-p', 'platform-pw');
      await reset();
      await tool('tpm2_changepps');
    });

    it('a changed owner authValue is required after the server restarts on the same state', async () => {
      await tool('tpm2_changeauth', '-c', 'owner', 'kept');
      await reset();
      assert.equal((await vars()).get('ownerAuthSet'), '1');
      await assert.rejects(tool('tpm2_changeauth', '-c', 'owner', 'x'), /0x9A2/);
      await tool('tpm2_changeauth', '-c', 'owner', '-p', 'kept');
    });

    it('tpm2_clearcontrol: lockout sets disableClear, tpm2_clear is then refused (TPM_RC_DISABLED) until the platform clears it', async () => {
      await tool('tpm2_clearcontrol', '-C', 'l', 's');
      assert.equal((await vars()).get('disableClear'), '1');
      await assert.rejects(tool('tpm2_clear', '-c', 'l'), /0x120/);
      await assert.rejects(tool('tpm2_clear', '-c', 'p'), /0x120/);
      await tool('tpm2_clearcontrol', '-C', 'p', 'c');
      assert.equal((await vars()).get('disableClear'), '0');
    });

    it('tpm2_clear -c l and -c p empty the authValues and remove owner and endorsement persistent objects, not platform ones', async () => {
      await persistPrimary('o', '0x81000001');
      await persistPrimary('e', '0x81010001');
      await persistPrimary('p', '0x81800001');
      await tool('tpm2_changeauth', '-c', 'owner', 'o');
      await tool('tpm2_changeauth', '-c', 'lockout', 'l');
      await tool('tpm2_clear', '-c', 'l', 'l');
      let v = await vars();
      assert.deepEqual([v.get('ownerAuthSet'), v.get('lockoutAuthSet')], ['0', '0']);
      assert.deepEqual(await persistentHandles(), ['0x81800001']);
      await tool('tpm2_changeauth', '-c', 'endorsement', 'e');
      await tool('tpm2_clear', '-c', 'p');
      v = await vars();
      assert.equal(v.get('endorsementAuthSet'), '0');
      await tool('tpm2_evictcontrol', '-C', 'p', '-c', '0x81800001');
      assert.deepEqual(await persistentHandles(), []);
    });

    it('tpm2_hierarchycontrol disables and enables shEnable, ehEnable and phEnableNV; a disabled hierarchy is TPM_RC_HIERARCHY', async () => {
      await tool('tpm2_hierarchycontrol', '-C', 'o', 'shEnable', 'clear');
      assert.equal((await vars()).get('shEnable'), '0');
      await assert.rejects(tool('tpm2_changeauth', '-c', 'owner', 'x'), /0x185/);
      await tool('tpm2_hierarchycontrol', '-C', 'p', 'shEnable', 'set');
      await tool('tpm2_hierarchycontrol', '-C', 'e', 'ehEnable', 'clear');
      let v = await vars();
      assert.deepEqual([v.get('shEnable'), v.get('ehEnable')], ['1', '0']);
      await assert.rejects(tool('tpm2_createprimary', '-C', 'e', '-G', 'ecc', '-c', file('eh.ctx')), /0x185/);
      await tool('tpm2_hierarchycontrol', '-C', 'p', 'ehEnable', 'set');
      await tool('tpm2_hierarchycontrol', '-C', 'p', 'phEnableNV', 'clear');
      assert.equal((await vars()).get('phEnableNV'), '0');
      await tool('tpm2_hierarchycontrol', '-C', 'p', 'phEnableNV', 'set');
      v = await vars();
      assert.deepEqual([v.get('phEnable'), v.get('shEnable'), v.get('ehEnable'), v.get('phEnableNV')], ['1', '1', '1', '1']);
    });

    it('tpm2_hierarchycontrol -C p phEnable clear locks the platform out until a TPM Reset', async () => {
      await tool('tpm2_hierarchycontrol', '-C', 'p', 'phEnable', 'clear');
      assert.equal((await vars()).get('phEnable'), '0');
      await assert.rejects(tool('tpm2_changepps'), /0x185/);
      await reset();
      assert.equal((await vars()).get('phEnable'), '1');
      await tool('tpm2_changepps');
    });

    it('tpm2_setprimarypolicy sets policies of each hierarchy; a digest not of the hash size is TPM_RC_SIZE', async () => {
      const policy = file('policy.bin');
      writeFileSync(policy, randomBytes(32));
      for (const h of ['o', 'e', 'l', 'p']) await tool('tpm2_setprimarypolicy', '-C', h, '-L', policy, '-g', 'sha256');
      const short = file('policy20.bin');
      writeFileSync(short, randomBytes(20));
      await assert.rejects(tool('tpm2_setprimarypolicy', '-C', 'o', '-L', short, '-g', 'sha256'), /0x1D5/);
      await tool('tpm2_setprimarypolicy', '-C', 'o', '-L', short, '-g', 'sha1');
    });

    it('tpm2_changeeps resets endorsementAuth and removes endorsement persistent objects only; tpm2_changepps removes platform ones', async () => {
      await persistPrimary('o', '0x81000001');
      await persistPrimary('e', '0x81010001');
      await persistPrimary('p', '0x81800001');
      await tool('tpm2_changeauth', '-c', 'endorsement', 'e');
      await tool('tpm2_changeeps');
      assert.equal((await vars()).get('endorsementAuthSet'), '0');
      assert.deepEqual(await persistentHandles(), ['0x81000001', '0x81800001']);
      await tool('tpm2_changepps');
      assert.deepEqual(await persistentHandles(), ['0x81000001']);
      await tool('tpm2_evictcontrol', '-C', 'o', '-c', '0x81000001');
    });

    it('tpm2_dictionarylockout -s -n 3 -t 100 -l 200 sets the DA parameters TPM_PT_MAX_AUTH_FAIL, _LOCKOUT_INTERVAL, _LOCKOUT_RECOVERY', async () => {
      await tool('tpm2_dictionarylockout', '-s', '-n', '3', '-t', '100', '-l', '200');
      const v = await vars();
      assert.equal(Number(v.get('TPM2_PT_MAX_AUTH_FAIL')), 3);
      assert.equal(Number(v.get('TPM2_PT_LOCKOUT_INTERVAL')), 100);
      assert.equal(Number(v.get('TPM2_PT_LOCKOUT_RECOVERY')), 200);
      await reset();
      assert.equal(Number((await vars()).get('TPM2_PT_LOCKOUT_RECOVERY')), 200);
    });

    it('wrong passwords on a sealed object count up to TPM_RC_LOCKOUT; tpm2_dictionarylockout -c clears it', async () => {
      const primary = file('seal-parent.ctx');
      const sealed = file('sealed.ctx');
      const data = file('sealed.dat');
      writeFileSync(data, 'sealed secret');
      await tool('tpm2_createprimary', '-C', 'o', '-G', 'ecc', '-c', primary);
      await tool('tpm2_flushcontext', '-t');
      await tool('tpm2_create', '-C', primary, '-p', 'right', '-i', data, '-u', file('sealed.pub'), '-r', file('sealed.priv'), '-c', sealed);
      await tool('tpm2_flushcontext', '-t');
      const unseal = async (password: string) => {
        try {
          return await tool('tpm2_unseal', '-c', sealed, '-p', password);
        } finally {
          await tool('tpm2_flushcontext', '-t');
        }
      };
      assert.equal(await unseal('right'), 'sealed secret');
      for (let i = 1; i <= 3; i++) {
        await assert.rejects(unseal('wrong'), /0x98E/);
        assert.equal(Number((await vars()).get('TPM2_PT_LOCKOUT_COUNTER')), i);
      }
      await assert.rejects(unseal('right'), /0x921/);
      assert.equal((await vars()).get('inLockout'), '1');
      await tool('tpm2_dictionarylockout', '-c');
      const v = await vars();
      assert.deepEqual([v.get('inLockout'), Number(v.get('TPM2_PT_LOCKOUT_COUNTER'))], ['0', 0]);
      assert.equal(await unseal('right'), 'sealed secret');
    });

    it('a wrong lockout password is TPM_RC_AUTH_FAIL, then lockoutAuth is TPM_RC_LOCKOUT (with lockoutRecovery 0: until a TPM Reset)', async () => {
      await tool('tpm2_dictionarylockout', '-s', '-n', '3', '-t', '100', '-l', '0');
      await assert.rejects(tool('tpm2_dictionarylockout', '-c', '-p', 'wrong'), /0x98E/);
      await assert.rejects(tool('tpm2_dictionarylockout', '-c'), /0x921/);
      await assert.rejects(tool('tpm2_clear', '-c', 'l'), /0x921/);
      await reset();
      await tool('tpm2_dictionarylockout', '-c');
      await tool('tpm2_dictionarylockout', '-s', '-n', '3', '-t', '1000', '-l', '1000');
    });
  });
}
