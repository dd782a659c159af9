/**
 * The CLI's side of the control API. The daemon is found through `--api`, then `VTPMD_API`, then
 * the default socket in the state directory; a TCP API's token comes from `VTPMD_API_TOKEN`.
 */
import type { Command } from 'commander';
import { request } from 'node:http';
import { join } from 'node:path';
import { stateDirFallback } from './socket-command.ts';

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export function resolveApi(explicit: string | undefined, stateDir: string): string {
  return explicit ?? process.env.VTPMD_API ?? `unix://${join(stateDir, 'vtpmd.sock')}`;
}

/**
 * A command's action that talks to the daemon: `fn` gets the API address (`--api` as `apiOption`
 * reads it, then VTPMD_API, then the state directory's socket) and the command; what it returns
 * is printed as JSON, and an ApiError is one line on stderr and exit code 1.
 */
export function apiAction(apiOption: () => string | undefined, fn: (api: string, command: Command) => Promise<unknown>) {
  return async (...args: unknown[]): Promise<void> => {
    const command = args[args.length - 1] as Command;
    const api = resolveApi(apiOption(), stateDirFallback(command, undefined));
    try {
      const out = await fn(api, command);
      if (out !== undefined) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      process.stderr.write(`vtpmd: error: ${e.message}\n`);
      process.exitCode = 1;
    }
  };
}

/**
 * A command of `program` that talks to the running daemon: it takes `--api`, and `run` wraps an
 * action of it or of its subcommands as apiAction does.
 */
export function apiCommand(program: Command, name: string, description: string): { command: Command; run: (fn: (api: string, command: Command) => Promise<unknown>) => ReturnType<typeof apiAction> } {
  const command: Command = program
    .command(name)
    .description(description)
    .option('--api <address>', 'the daemon: unix:///path or http://127.0.0.1:PORT (default VTPMD_API, then <state>/vtpmd.sock)');
  return { command, run: (fn) => apiAction(() => command.opts().api as string | undefined, fn) };
}

export async function callApi(api: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const target = api.startsWith('unix://') ? { socketPath: api.slice('unix://'.length) } : apiHost(api);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string> = {};
  if (payload) headers['content-type'] = 'application/json';
  if (!api.startsWith('unix://') && process.env.VTPMD_API_TOKEN) headers.authorization = `Bearer ${process.env.VTPMD_API_TOKEN}`;
  return new Promise((ok, fail) => {
    const req = request({ ...target, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: any = undefined;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = text;
        }
        if ((res.statusCode ?? 500) >= 400) fail(new ApiError(json?.error ?? `the daemon answered ${res.statusCode}`, res.statusCode, json?.code));
        else ok({ status: res.statusCode ?? 200, json });
      });
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EACCES'].includes(e.code ?? '')) {
        fail(new ApiError(`no vtpmd daemon answers at ${api} (${e.code}); start one with \`vtpmd serve\`, or point --api / VTPMD_API at it`));
      } else fail(e);
    });
    req.end(payload);
  });
}

function apiHost(api: string): { host: string; port: number } {
  let u: URL;
  try {
    u = new URL(api);
  } catch {
    throw new ApiError(`--api ${api}: expected unix:///path/to/vtpmd.sock or http://127.0.0.1:PORT`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'tcp:') throw new ApiError(`--api ${api}: expected unix:///path/to/vtpmd.sock or http://127.0.0.1:PORT`);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) };
}
