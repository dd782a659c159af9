/**
 * Audit commands (TPM 2.0 Part 3, 18.5, 18.6 and 21.2): GetSessionAuditDigest,
 * GetCommandAuditDigest and SetCommandCodeAuditStatus. The digests themselves are kept by
 * ../audit.ts.
 */
import { checked, u32 } from '../../wire/codec.ts';
import { CC, HT, ST } from '../constants.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import { algHashOrNull, dataBuf, u32List } from '../types/basic.ts';
import { rhProvision } from '../types/handles.ts';
import { attest2b } from '../types/attest.ts';
import { sigScheme, signature } from '../types/signature.ts';
import { SESSION_TYPE } from '../auth/sessions.ts';
import { auditLog, commandListDigest, isExclusiveAuditSession, sessionAuditOf, setAuditStatus } from '../audit.ts';
import { attestHeader, dhObjectOrNull, rhEndorsement, schemeFor, signAttest, signerAt } from './attestation.ts';

/** TPMI_SH_HMAC. */
const shHmac = checked(u32, (h) => h >>> 24 === HT.HMAC_SESSION, RC.VALUE);
/** TPML_CC (MAX_CAP_CC entries). */
const ccList = u32List(254);

const signingParams = { qualifyingData: dataBuf, inScheme: sigScheme };

export const auditCommands = [
  command({
    cc: CC.GetSessionAuditDigest,
    name: 'GetSessionAuditDigest',
    handles: [
      { name: 'privacyAdminHandle', type: rhEndorsement, auth: 'user' },
      { name: 'signHandle', type: dhObjectOrNull, auth: 'user' },
      { name: 'sessionHandle', type: shHmac, auth: 'none' },
    ],
    params: signingParams,
    response: { auditInfo: attest2b, signature },
    handler: ({ tpm, handles }, { qualifyingData, inScheme }) => {
      const sessionHandle = handles[2]!;
      const session = tpm.sessions.get(sessionHandle);
      // Only an HMAC session that has been used for audit has an audit digest.
      const audit = session && session.type === SESSION_TYPE.HMAC ? sessionAuditOf(session) : undefined;
      if (!audit) throw TpmError.handle(RC.TYPE, 3);
      const signer = signerAt(tpm, handles[1]!, 2);
      const scheme = schemeFor(signer, inScheme, 2);
      const out = signAttest(signer, scheme, {
        ...attestHeader(tpm, signer, qualifyingData),
        type: ST.ATTEST_SESSION_AUDIT,
        attested: { exclusiveSession: isExclusiveAuditSession(tpm, sessionHandle), sessionDigest: audit.digest },
      });
      return { auditInfo: out.bytes, signature: out.signature };
    },
  }),
  command({
    cc: CC.GetCommandAuditDigest,
    name: 'GetCommandAuditDigest',
    nv: true,
    handles: [
      { name: 'privacyHandle', type: rhEndorsement, auth: 'user' },
      { name: 'signHandle', type: dhObjectOrNull, auth: 'user' },
    ],
    params: signingParams,
    response: { auditInfo: attest2b, signature },
    handler: ({ tpm, handles }, { qualifyingData, inScheme }) => {
      const signHandle = handles[1]!;
      const signer = signerAt(tpm, signHandle, 2);
      const scheme = schemeFor(signer, inScheme, 2);
      const log = auditLog(tpm);
      const out = signAttest(signer, scheme, {
        ...attestHeader(tpm, signer, qualifyingData),
        type: ST.ATTEST_COMMAND_AUDIT,
        attested: {
          auditCounter: log.counter,
          digestAlg: log.hashAlg,
          auditDigest: log.current(tpm.nv.resetCount),
          commandDigest: commandListDigest(tpm),
        },
      });
      // A signed report starts a new digest (and, at its first extension, a new count); a
      // NULL-signed one only reads it.
      if (signer) log.clearDigest(tpm.nv.resetCount);
      return { auditInfo: out.bytes, signature: out.signature };
    },
  }),
  command({
    cc: CC.SetCommandCodeAuditStatus,
    name: 'SetCommandCodeAuditStatus',
    nv: true,
    handles: [{ name: 'auth', type: rhProvision, auth: 'user' }],
    params: { auditAlg: algHashOrNull, setList: ccList, clearList: ccList },
    response: {},
    handler: ({ tpm }, { auditAlg, setList, clearList }) => {
      if (setAuditStatus(tpm, auditAlg, setList, clearList)) tpm.markNvDirty();
      return {};
    },
  }),
];
