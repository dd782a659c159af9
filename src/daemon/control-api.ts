/**
 * The control API: HTTP with JSON, on a Unix socket (mode 0600: the file permission is the
 * access control) or on loopback TCP, where every request must carry the bearer token.
 *
 *   GET    /health                   liveness and whether the PSS serves vTPMs
 *   GET    /metrics                  Prometheus text
 *   GET    /vms                      every VM
 *   POST   /vms                      {"name", "dm"?, "tpm"?, "migratable"?, "durability"?} → the VM (201)
 *   GET    /vms/NAME                 one VM
 *   POST   /vms/NAME/stop | /start   → the VM
 *   DELETE /vms/NAME                 → 204
 *   GET    /vms/NAME/credentials     {"ek", "platform", "chain": [...], "vmcaRoot"} as PEM
 *   POST   /upgrade                  {"code"?: "/new/vtpmd", "bootLog"?: "/new/boot.log"} → what was staged (code-upgrade.ts)
 *   DELETE /upgrade                  → {"cancelled": boolean}
 *
 * Errors are JSON {"error": message, "code": code} with the status saying which kind: 400 bad
 * request, 401 token, 404 unknown VM or route, 405 method, 409 duplicate or an upgrade that cannot
 * be staged, 413 body too large, 422 refused by the vTPM layer, 503 the PSS is failing, 500 a
 * fault (logged; the message carries nothing internal).
 */
import { timingSafeEqual } from 'node:crypto';
import { chmod, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { PssError, PssViolation } from '../pss/errors.ts';
import { UpgradeError } from './code-upgrade.ts';
import { VtpmError } from '../vtpm/manager.ts';
import { toPem } from '../hwtpm/credentials/x509.ts';
import type { CreateVmRequest, VmService } from './vm-service.ts';
import type { UpgradeRequest } from './host.ts';

export type ApiAddress = { type: 'unix'; path: string } | { type: 'tcp'; host: string; port: number; token: string };

const MAX_BODY = 64 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface ControlApi {
  /** `unix:///path` or `http://host:port`. */
  readonly url: string;
  close(): Promise<void>;
}

export async function startControlApi(service: VmService, address: ApiAddress, logger: Logger): Promise<ControlApi> {
  const server = createServer((req, res) => {
    handle(service, address, req, res, logger).catch((e) => {
      logger.error({ err: e }, 'control API request failed');
      if (!res.headersSent) send(res, 500, { error: 'internal error; see the daemon log', code: 'internal' });
    });
  });
  if (address.type === 'unix') {
    // A stale socket from a crashed daemon would make listen fail with EADDRINUSE.
    await unlink(address.path).catch(() => undefined);
    await listen(server, address.path);
    await chmod(address.path, 0o600);
    return { url: `unix://${address.path}`, close: () => closeServer(server, address.path) };
  }
  await listen(server, address.port, address.host);
  const port = (server.address() as { port: number }).port;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return { url: `http://${host}:${port}`, close: () => closeServer(server) };
}

function listen(server: Server, ...args: [string] | [number, string]): Promise<void> {
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(...(args as [number, string]), () => {
      server.off('error', fail);
      ok();
    });
  });
}

async function closeServer(server: Server, path?: string): Promise<void> {
  await new Promise<void>((ok) => server.close(() => ok()));
  server.closeAllConnections();
  if (path) await unlink(path).catch(() => undefined);
}

function send(res: ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
  const text = contentType === 'application/json' ? `${JSON.stringify(body)}\n` : String(body);
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function authorized(address: ApiAddress, req: IncomingMessage): boolean {
  if (address.type === 'unix') return true;
  const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const given = Buffer.from(m[1]!);
  const expected = Buffer.from(address.token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, 'too-large', `request bodies are limited to ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
  } catch {
    throw new HttpError(400, 'bad-json', 'the request body is not valid JSON');
  }
}

function createRequest(body: unknown): CreateVmRequest {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'bad-request', 'expected a JSON object: {"name": …, "dm"?: "software"|"hardware", "tpm"?: "2.0"|"1.2", "migratable"?: boolean, "durability"?: "per-command"|"batched"}');
  const b = body as Record<string, unknown>;
  const known = new Set(['name', 'dm', 'tpm', 'migratable', 'durability']);
  const unknown = Object.keys(b).filter((k) => !known.has(k));
  if (unknown.length) throw new HttpError(400, 'bad-request', `unknown field(s): ${unknown.join(', ')}`);
  if (typeof b.name !== 'string') throw new HttpError(400, 'bad-request', '"name" must be a string');
  if (b.dm !== undefined && b.dm !== 'software' && b.dm !== 'hardware') throw new HttpError(400, 'bad-request', '"dm" must be "software" or "hardware"');
  if (b.tpm !== undefined && b.tpm !== '2.0' && b.tpm !== '1.2') throw new HttpError(400, 'bad-request', '"tpm" must be "2.0" or "1.2"');
  if (b.migratable !== undefined && typeof b.migratable !== 'boolean') throw new HttpError(400, 'bad-request', '"migratable" must be true or false');
  if (b.durability !== undefined && b.durability !== 'per-command' && b.durability !== 'batched') throw new HttpError(400, 'bad-request', '"durability" must be "per-command" or "batched"');
  return b as unknown as CreateVmRequest;
}

function upgradeRequest(body: unknown): UpgradeRequest {
  const b = body as Record<string, unknown> | null;
  const path = (v: unknown) => v === undefined || (typeof v === 'string' && v.startsWith('/'));
  if (
    !b ||
    typeof b !== 'object' ||
    Array.isArray(b) ||
    Object.keys(b).some((k) => k !== 'code' && k !== 'bootLog') ||
    !path(b.code) ||
    !path(b.bootLog) ||
    (b.code === undefined && b.bootLog === undefined)
  ) {
    throw new HttpError(400, 'bad-request', 'expected a JSON object with absolute paths on this host: {"code"?: "/path/to/the/new/vtpmd", "bootLog"?: "/path/to/the/new/boot/event/log"}, at least one');
  }
  return b as UpgradeRequest;
}

async function handle(service: VmService, address: ApiAddress, req: IncomingMessage, res: ServerResponse, logger: Logger): Promise<void> {
  try {
    if (!authorized(address, req)) throw new HttpError(401, 'unauthorized', 'missing or wrong bearer token');
    const url = new URL(req.url ?? '/', 'http://vtpmd');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? 'GET';
    const only = (...allowed: string[]) => {
      if (!allowed.includes(method)) throw new HttpError(405, 'method-not-allowed', `${method} is not allowed on ${url.pathname}; use ${allowed.join(' or ')}`);
    };
    if (parts.length === 1 && parts[0] === 'health') {
      only('GET');
      return send(res, 200, await service.health());
    }
    if (parts.length === 1 && parts[0] === 'metrics') {
      only('GET');
      return send(res, 200, service.renderMetrics(), 'text/plain; version=0.0.4');
    }
    if (parts[0] === 'vms') {
      if (parts.length === 1) {
        only('GET', 'POST');
        if (method === 'GET') return send(res, 200, await service.list());
        return send(res, 201, await service.create(createRequest(await readJson(req))));
      }
      const name = parts[1]!;
      if (parts.length === 2) {
        only('GET', 'DELETE');
        if (method === 'GET') return send(res, 200, await service.show(name));
        await service.destroy(name);
        res.writeHead(204).end();
        return;
      }
      if (parts.length === 3 && parts[2] === 'credentials') {
        only('GET');
        const c = await service.credentials(name);
        return send(res, 200, { ek: toPem(c.ekCertificate), platform: toPem(c.platformCertificate), chain: c.chain.map((d) => toPem(d)), vmcaRoot: toPem(c.vmcaRoot) });
      }
      if (parts.length === 3 && (parts[2] === 'stop' || parts[2] === 'start')) {
        only('POST');
        return send(res, 200, parts[2] === 'stop' ? await service.stop(name) : await service.start(name));
      }
    }
    if (parts.length === 1 && parts[0] === 'upgrade') {
      only('POST', 'DELETE');
      if (method === 'DELETE') return send(res, 200, await service.cancelUpgrade());
      return send(res, 200, await service.stageUpgrade(upgradeRequest(await readJson(req))));
    }
    throw new HttpError(404, 'not-found', `no such resource: ${method} ${url.pathname}`);
  } catch (e) {
    if (e instanceof HttpError) return send(res, e.status, { error: e.message, code: e.code });
    if (e instanceof VtpmError) {
      const status = e.code === 'unknown-vm' ? 404 : e.code === 'duplicate-vm' ? 409 : e.code === 'bad-config' ? 400 : 422;
      return send(res, status, { error: e.message, code: e.code });
    }
    if (e instanceof UpgradeError) return send(res, e.code === 'bad-code' || e.code === 'bad-boot-log' ? 400 : 409, { error: e.message, code: e.code });
    if (e instanceof PssError) return send(res, e.code === 'bad-request' ? 400 : 503, { error: e.message, code: e.code });
    if (e instanceof PssViolation) {
      logger.warn({ condition: e.condition, vm: e.vmId }, 'the PSS refused a vTPM');
      return send(res, 422, { error: e.message, code: e.condition });
    }
    throw e;
  }
}
