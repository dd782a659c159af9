/**
 * The TPM as one swtpm server instance sees it: the device plus swtpm's two pieces of server-wide
 * state, "is the TPM running" (CMD_INIT / CMD_STOP, `not-need-init`) and the locality that the
 * control channel sets for every later data command. Every device call goes through the queue so
 * that power signals never interleave with a command.
 */
import type { Logger } from 'pino';
import type { TpmDevice } from '../tpm/device.ts';
import type { SerialQueue } from '../tpm/serial-queue.ts';
import { failureResponse, responseCode, startupCommand, type StartupType } from './tpm-frames.ts';
import { FailureLog } from './failure-log.ts';

export const MAX_LOCALITY = 4;

export class SwtpmTpm {
  #running = false;
  #locality = 0;
  readonly #failures: FailureLog;

  constructor(
    readonly device: TpmDevice,
    private readonly queue: SerialQueue,
    private readonly logger: Logger,
  ) {
    this.#failures = new FailureLog(logger);
  }

  get running(): boolean {
    return this.#running;
  }

  get locality(): number {
    return this.#locality;
  }

  /** Returns false for localities the device cannot be asked for. Needs no running TPM, as in swtpm. */
  setLocality(locality: number): boolean {
    if (!Number.isInteger(locality) || locality < 0 || locality > MAX_LOCALITY) return false;
    this.#locality = locality;
    return true;
  }

  /**
   * Start-up without CMD_INIT (`not-need-init`): powers the device on unless it already is (the
   * daemon may hand over a running device) and sends the Startup command if asked to. Rejects
   * only when the device itself fails, which makes the server start fail.
   */
  start(startup: StartupType | undefined): Promise<void> {
    return this.queue.run(async () => {
      if (!this.device.powered) await this.device.powerOn();
      this.#running = true;
      if (startup === undefined) return;
      const response = await this.device.execute(startupCommand(this.device.family, startup), 0);
      const rc = responseCode(response);
      if (rc === 0) this.logger.debug({ startup }, 'sent Startup');
      else this.logger.warn({ startup, rc }, 'the device refused the Startup command sent at start-up');
    });
  }

  /**
   * One data-channel command. A TPM that is not running answers the way swtpm does (a failure
   * response); a device that fails at host level is logged and answered the same way, so a
   * client never sees a dropped connection for a TPM-side problem.
   */
  execute(command: Uint8Array): Promise<Uint8Array> {
    return this.queue.run(async () => {
      if (!this.#running) return failureResponse(this.device.family);
      try {
        return await this.device.execute(command, this.#locality);
      } catch (err) {
        this.#failures.commandFailed(err);
        return failureResponse(this.device.family);
      }
    });
  }

  /**
   * The fast path of a data command: when nothing else is queued and the device can answer
   * synchronously, answer now, skipping the promise chain. Returns undefined when the caller
   * must take the queued path instead.
   */
  executeNow(command: Uint8Array): Uint8Array | undefined {
    const device = this.device;
    if (!device.executeSync || !this.queue.isIdle) return undefined;
    if (!this.#running) return failureResponse(device.family);
    try {
      return device.executeSync(command, this.#locality);
    } catch (err) {
      this.#failures.commandFailed(err);
      return failureResponse(device.family);
    }
  }

  /** CMD_INIT: _TPM_Init, i.e. a power cycle. Resolves false when the device failed. */
  init(): Promise<boolean> {
    return this.queue.run(async () => {
      this.#running = false;
      try {
        if (this.device.powered) await this.device.powerOff();
        await this.device.powerOn();
        this.#running = true;
        return true;
      } catch (err) {
        this.logger.error({ err }, 'the device failed to power on (CMD_INIT)');
        return false;
      }
    });
  }

  /** CMD_STOP / CMD_SHUTDOWN: make everything durable, then remove power. Resolves false on failure. */
  stop(): Promise<boolean> {
    return this.queue.run(async () => {
      this.#running = false;
      try {
        await this.device.flush();
        if (this.device.powered) await this.device.powerOff();
        return true;
      } catch (err) {
        this.logger.error({ err }, 'the device failed to flush or power off');
        return false;
      }
    });
  }

  /** CMD_STORE_VOLATILE: our devices keep no separate volatile-state file, so this is a flush. */
  storeVolatile(): Promise<boolean> {
    return this.queue.run(async () => {
      try {
        await this.device.flush();
        return true;
      } catch (err) {
        this.logger.error({ err }, 'the device failed to flush (CMD_STORE_VOLATILE)');
        return false;
      }
    });
  }

  resetEstablished(locality: number): Promise<boolean> {
    return this.queue.run(async () => this.device.resetEstablished(locality));
  }
}
