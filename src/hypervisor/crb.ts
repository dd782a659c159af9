/**
 * The TPM Command Response Buffer interface (TCG PC Client Platform TPM Profile, CRB) as the MMIO
 * registers a guest sees: five locality windows 0x1000 apart, each with the locality registers,
 * the control area and the data buffer at 0x80. All windows alias one device: one active
 * locality, one control state, one buffer. Guests make aligned 32-bit accesses; anything else
 * reads as all ones and is dropped on write, as a bus with nothing decoding the address would.
 *
 * Choices where the spec leaves room (each is what a guest can observe):
 *  - Control registers and the data buffer belong to the active locality: from any other window a
 *    write is dropped and a read returns all ones, so one locality never sees another's response.
 *    The locality registers and the read-only identity/size registers answer from every window.
 *  - A change of active locality (seize, relinquish) while a command is outstanding abandons it:
 *    a queued command is withdrawn, a running one finishes but its response is discarded, and the
 *    interface returns to idle with the buffer cleared.
 *  - Backpressure: cmdReady reserves a place in the partition's input queue. While the queue is
 *    full the request stays pending — CTRL_REQ.cmdReady reads 1, CTRL_STS.tpmIdle stays 1 — and
 *    completes (cmdReady interrupt) when a place frees, which is how a CRB TPM says "not yet".
 *    A START without a reservation (a second command without a new cmdReady) waits the same way
 *    with START reading 1; nothing the guest submitted is ever dropped.
 *  - START is ignored while a command is outstanding, while the interface is idle (no cmdReady)
 *    and after a fatal error. A command whose header size is below 10 or above CMD_SIZE is not
 *    queued: the device answers it with TPM_RC_COMMAND_SIZE at once.
 *  - CANCEL withdraws a command still queued and answers it with TPM_RC_CANCELED; a command the
 *    vTPM is already executing completes normally (the spec lets a TPM finish a cancelled
 *    command). Cancel acts on the write of 1; the guest clears the register itself.
 *  - goIdle while a command is outstanding is ignored: the response would be lost otherwise.
 *  - A host-level fault of the vTPM (its promise rejects) or a response larger than the buffer
 *    sets CTRL_STS.tpmSts: the device is in fatal error and refuses START until reset.
 *  - LOC_STATE.tpmEstablished reads 1 while the device's established flag is clear, the polarity
 *    QEMU's CRB and the TIS access register use.
 */

export const CRB_LOCALITY_WINDOW = 0x1000;
export const CRB_LOCALITIES = 5;
/** The fixed PC-client TPM address the guest-physical CMD/RSP_ADDR registers are reported from. */
export const CRB_DEFAULT_BASE = 0xfed40000;

export const CRB_REG = {
  LOC_STATE: 0x00,
  LOC_CTRL: 0x08,
  LOC_STS: 0x0c,
  INTF_ID: 0x30,
  INTF_ID2: 0x34,
  CTRL_EXT: 0x38,
  CTRL_REQ: 0x40,
  CTRL_STS: 0x44,
  CTRL_CANCEL: 0x48,
  CTRL_START: 0x4c,
  INT_ENABLE: 0x50,
  INT_STS: 0x54,
  CMD_SIZE: 0x58,
  CMD_LADDR: 0x5c,
  CMD_HADDR: 0x60,
  RSP_SIZE: 0x64,
  RSP_LADDR: 0x68,
  RSP_HADDR: 0x6c,
  DATA_BUFFER: 0x80,
} as const;

export const LOC_STATE = { tpmEstablished: 1 << 0, locAssigned: 1 << 1, activeLocalityShift: 2, activeLocalityMask: 0x7 << 2, tpmRegValidSts: 1 << 7 } as const;
export const LOC_CTRL = { requestAccess: 1 << 0, relinquish: 1 << 1, seize: 1 << 2, resetEstablishment: 1 << 3 } as const;
export const LOC_STS = { granted: 1 << 0, beenSeized: 1 << 1 } as const;
export const CTRL_REQ = { cmdReady: 1 << 0, goIdle: 1 << 1 } as const;
export const CTRL_STS = { tpmSts: 1 << 0, tpmIdle: 1 << 1 } as const;
export const CTRL_START = { start: 1 << 0 } as const;
export const CTRL_CANCEL = { cancel: 1 << 0 } as const;
/** INT_ENABLE / INT_STS bits; INT_ENABLE bit 31 enables interrupts globally. */
export const CRB_INT = { start: 1 << 0, cmdReady: 1 << 1, establishedClear: 1 << 2, localityChanged: 1 << 3, globalEnable: 0x8000_0000 } as const;

/**
 * TPM_CRB_INTF_ID: InterfaceType 1 (CRB active), InterfaceVersion 1 (CRB), CapLocality 1 (five
 * localities), CapCRBIdleBypass 0, CapDataXferSizeSupport 3 (64 bytes), CapFIFO 0, CapCRB 1,
 * InterfaceSelector 1 (CRB), IntfSelLock 1 (the guest cannot switch to FIFO), RID 0.
 */
export const CRB_INTF_ID_VALUE = (1 << 0) | (1 << 4) | (1 << 8) | (3 << 11) | (1 << 14) | (1 << 17) | (1 << 19);

const ALL_ONES = 0xffff_ffff;
const HEADER = 10;
const TPM_ST_NO_SESSIONS = 0x8001;
const TPM_RC_COMMAND_SIZE = 0x142;
const TPM_RC_CANCELED = 0x909;

/** A command the CRB handed to its partition; the partition answers through `CrbDevice.complete`. */
export interface CrbCommand {
  readonly command: Uint8Array;
  readonly locality: number;
  readonly crb: CrbDevice;
  /** The interface generation it belongs to: a response for an abandoned generation is dropped. */
  readonly generation: number;
  withdrawn: boolean;
}

/** What a CRB needs of the partition behind it. */
export interface CrbBackend {
  /** Reserves one place in the input queue; false when it is full. */
  reserve(): boolean;
  /** Returns an unused reservation. */
  release(): void;
  /** Asks to be told (once, through `placeGranted`) when a place is reserved for this CRB. */
  awaitPlace(crb: CrbDevice): void;
  /** Withdraws an `awaitPlace` request. */
  stopAwaitingPlace(crb: CrbDevice): void;
  /** Queues a command, consuming the reservation the CRB holds. */
  submit(cmd: CrbCommand): void;
  /** Withdraws a queued command; false once the vTPM has it. */
  withdraw(cmd: CrbCommand): boolean;
  readonly established: boolean;
  resetEstablished(locality: number): boolean;
  readonly maxCommandSize: number;
}

export type CrbViolation =
  | 'bad-access'
  | 'inactive-locality'
  | 'start-while-busy'
  | 'start-while-idle'
  | 'start-after-fatal'
  | 'bad-command-size'
  | 'go-idle-while-busy'
  | 'seize-refused'
  | 'reset-establishment-refused';

export interface CrbOptions {
  /** Guest-physical base of locality 0's window. */
  base?: number;
  vendorId?: number;
  deviceId?: number;
}

type PlaceWait = 'none' | 'ready' | 'start';

export class CrbDevice {
  readonly bufferSize = CRB_LOCALITY_WINDOW - CRB_REG.DATA_BUFFER;
  /** Largest command START accepts: the buffer, or less if the device behind it says so. */
  readonly commandSize: number;
  /** Protocol violations seen, by kind: what a guest did wrong, for tests and metrics. */
  readonly violations = new Map<CrbViolation, number>();

  readonly #buf: Uint8Array;
  readonly #view: DataView;
  readonly #base: number;
  readonly #intfId2: number;

  #active = -1;
  #pendingRequests = 0;
  #seized = 0;
  #idle = true;
  #fatal = false;
  #start = false;
  #cancel = 0;
  #readyPending = false;
  #hasPlace = false;
  #placeWait: PlaceWait = 'none';
  #outstanding: CrbCommand | undefined;
  #generation = 0;
  #intEnable = 0;
  #intSts = 0;
  #irqWaiters: (() => void)[] = [];
  #dead = false;
  /** Bytes of the buffer that may hold data: what has to be wiped when a locality leaves. */
  #dirty = 0;

  constructor(
    private readonly backend: CrbBackend,
    opts: CrbOptions = {},
  ) {
    this.#buf = new Uint8Array(this.bufferSize);
    this.#view = new DataView(this.#buf.buffer);
    this.#base = opts.base ?? CRB_DEFAULT_BASE;
    this.#intfId2 = ((opts.vendorId ?? 0x1014) & 0xffff) | (((opts.deviceId ?? 0x0001) & 0xffff) << 16);
    this.commandSize = Math.min(this.bufferSize, backend.maxCommandSize);
  }

  /** The active locality, or -1. */
  get activeLocality(): number {
    return this.#active;
  }

  /** A command is queued, executing, or waiting for a place. */
  get busy(): boolean {
    return this.#start;
  }

  read(offset: number): number {
    if (this.#dead || !aligned(offset)) return this.#violation('bad-access', ALL_ONES);
    const loc = offset >>> 12;
    const reg = offset & 0xfff;
    if (reg >= CRB_REG.DATA_BUFFER) {
      if (loc !== this.#active) return this.#violation('inactive-locality', ALL_ONES);
      return this.#view.getUint32(reg - CRB_REG.DATA_BUFFER, true);
    }
    switch (reg) {
      case CRB_REG.LOC_STATE:
        return (
          (this.backend.established ? 0 : LOC_STATE.tpmEstablished) |
          (this.#active >= 0 ? LOC_STATE.locAssigned | (this.#active << LOC_STATE.activeLocalityShift) : 0) |
          LOC_STATE.tpmRegValidSts
        );
      case CRB_REG.LOC_CTRL:
        return 0;
      case CRB_REG.LOC_STS:
        return (loc === this.#active ? LOC_STS.granted : 0) | (this.#seized & (1 << loc) ? LOC_STS.beenSeized : 0);
      case CRB_REG.INTF_ID:
        return CRB_INTF_ID_VALUE;
      case CRB_REG.INTF_ID2:
        return this.#intfId2;
      case CRB_REG.CMD_SIZE:
        return this.commandSize;
      case CRB_REG.RSP_SIZE:
        return this.bufferSize;
      case CRB_REG.CMD_LADDR:
      case CRB_REG.RSP_LADDR:
        // Command and response share the buffer, as Linux's driver allows.
        return (this.#base + loc * CRB_LOCALITY_WINDOW + CRB_REG.DATA_BUFFER) >>> 0;
      case CRB_REG.CMD_HADDR:
      case CRB_REG.RSP_HADDR:
        return Math.floor((this.#base + loc * CRB_LOCALITY_WINDOW + CRB_REG.DATA_BUFFER) / 2 ** 32);
    }
    if (loc !== this.#active) return this.#violation('inactive-locality', ALL_ONES);
    switch (reg) {
      case CRB_REG.CTRL_EXT:
        return 0;
      case CRB_REG.CTRL_REQ:
        return this.#readyPending ? CTRL_REQ.cmdReady : 0;
      case CRB_REG.CTRL_STS:
        return (this.#fatal ? CTRL_STS.tpmSts : 0) | (this.#idle ? CTRL_STS.tpmIdle : 0);
      case CRB_REG.CTRL_CANCEL:
        return this.#cancel;
      case CRB_REG.CTRL_START:
        return this.#start ? CTRL_START.start : 0;
      case CRB_REG.INT_ENABLE:
        return this.#intEnable;
      case CRB_REG.INT_STS:
        return this.#intSts;
    }
    return 0;
  }

  write(offset: number, value: number): void {
    if (this.#dead || !aligned(offset)) return void this.#violation('bad-access', 0);
    value >>>= 0;
    const loc = offset >>> 12;
    const reg = offset & 0xfff;
    if (reg === CRB_REG.LOC_CTRL) return this.#locCtrl(loc, value);
    if (reg < CRB_REG.CTRL_EXT) return; // identity and locality state: read-only
    if (loc !== this.#active) return void this.#violation('inactive-locality', 0);
    if (reg >= CRB_REG.DATA_BUFFER) {
      const at = reg - CRB_REG.DATA_BUFFER;
      if (at + 4 > this.#dirty) this.#dirty = at + 4;
      return this.#view.setUint32(at, value, true);
    }
    switch (reg) {
      case CRB_REG.CTRL_REQ:
        return this.#ctrlReq(value);
      case CRB_REG.CTRL_CANCEL:
        this.#cancel = value & CTRL_CANCEL.cancel;
        if (this.#cancel) this.#cancelOutstanding();
        return;
      case CRB_REG.CTRL_START:
        if (value & CTRL_START.start) this.#startCommand(loc);
        return;
      case CRB_REG.INT_ENABLE:
        this.#intEnable = value & (CRB_INT.globalEnable | 0xf);
        return this.#maybeInterrupt();
      case CRB_REG.INT_STS:
        this.#intSts &= ~value;
        return;
    }
  }

  /**
   * The guest's interrupt line: resolves once an enabled interrupt is pending (at once if one
   * already is), or when the device goes away. A driver parks here instead of spinning on START.
   */
  waitForInterrupt(): Promise<void> {
    if (this.#dead || this.#interruptPending()) return Promise.resolve();
    return new Promise((resolve) => this.#irqWaiters.push(resolve));
  }

  /** Called by the partition with the vTPM's answer (or its host-level fault). */
  complete(cmd: CrbCommand, result: Uint8Array | Error): void {
    if (cmd !== this.#outstanding || cmd.generation !== this.#generation || this.#dead) return;
    this.#outstanding = undefined;
    if (result instanceof Error || result.length > this.bufferSize) {
      this.#fatal = true;
    } else {
      this.#buf.set(result, 0);
      if (result.length > this.#dirty) this.#dirty = result.length;
    }
    this.#finishStart();
  }

  /** A place in the input queue is now reserved for this CRB. */
  placeGranted(): void {
    const wait = this.#placeWait;
    this.#placeWait = 'none';
    if (this.#dead || wait === 'none') return this.backend.release();
    this.#hasPlace = true;
    if (wait === 'ready') {
      this.#readyPending = false;
      this.#idle = false;
      this.#raise(CRB_INT.cmdReady);
    } else {
      this.#submit(this.#outstanding!);
    }
  }

  /** The partition is gone: every access now floats, waiters are released. */
  shutdown(): void {
    if (this.#dead) return;
    this.#abandon();
    this.#dead = true;
    this.#wake();
  }

  #locCtrl(loc: number, value: number): void {
    if (loc >= CRB_LOCALITIES) return;
    const bit = 1 << loc;
    if (value & LOC_CTRL.resetEstablishment) {
      if (loc < 3 || !this.backend.resetEstablished(loc)) this.#violation('reset-establishment-refused', 0);
      else this.#raise(CRB_INT.establishedClear);
    }
    if (value & LOC_CTRL.relinquish) {
      this.#pendingRequests &= ~bit;
      this.#seized &= ~bit;
      if (this.#active === loc) {
        this.#abandon();
        this.#active = -1;
        this.#grantPending();
      }
    }
    if (value & LOC_CTRL.seize) {
      if (this.#active < 0) this.#grant(loc);
      else if (loc > this.#active) {
        this.#seized |= 1 << this.#active;
        this.#abandon();
        this.#pendingRequests &= ~bit;
        this.#grant(loc);
      } else if (loc !== this.#active) this.#violation('seize-refused', 0);
    }
    if (value & LOC_CTRL.requestAccess) {
      if (this.#active < 0) this.#grant(loc);
      else if (this.#active !== loc) this.#pendingRequests |= bit;
    }
  }

  #grant(loc: number): void {
    this.#pendingRequests &= ~(1 << loc);
    this.#active = loc;
    this.#raise(CRB_INT.localityChanged);
  }

  #grantPending(): void {
    for (let l = CRB_LOCALITIES - 1; l >= 0; l--) if (this.#pendingRequests & (1 << l)) return this.#grant(l);
  }

  #ctrlReq(value: number): void {
    const req = value & (CTRL_REQ.cmdReady | CTRL_REQ.goIdle);
    if (req === CTRL_REQ.cmdReady) {
      if (this.#hasPlace || this.#readyPending || this.#start) return;
      if (this.backend.reserve()) {
        this.#hasPlace = true;
        this.#idle = false;
        this.#raise(CRB_INT.cmdReady);
      } else {
        this.#readyPending = true;
        this.#placeWait = 'ready';
        this.backend.awaitPlace(this);
      }
    } else if (req === CTRL_REQ.goIdle) {
      if (this.#start) return void this.#violation('go-idle-while-busy', 0);
      this.#stopWaiting();
      this.#readyPending = false;
      if (this.#hasPlace) this.backend.release();
      this.#hasPlace = false;
      this.#idle = true;
    }
  }

  #startCommand(loc: number): void {
    if (this.#start) return void this.#violation('start-while-busy', 0);
    if (this.#fatal) return void this.#violation('start-after-fatal', 0);
    if (this.#idle) return void this.#violation('start-while-idle', 0);
    const size = this.#view.getUint32(2, false);
    this.#start = true;
    if (size < HEADER || size > this.commandSize) {
      this.#violation('bad-command-size', 0);
      this.#writeRc(TPM_RC_COMMAND_SIZE);
      return this.#finishStart();
    }
    // A copy from Node's buffer pool: a typed array of more than 64 bytes made with slice() gets
    // its own off-heap store, which costs more than the rest of the trap.
    const command = Buffer.allocUnsafe(size);
    command.set(this.#buf.subarray(0, size));
    const cmd: CrbCommand = { command, locality: loc, crb: this, generation: this.#generation, withdrawn: false };
    this.#outstanding = cmd;
    if (this.#hasPlace) return this.#submit(cmd);
    if (this.backend.reserve()) {
      this.#hasPlace = true;
      return this.#submit(cmd);
    }
    this.#placeWait = 'start';
    this.backend.awaitPlace(this);
  }

  #submit(cmd: CrbCommand): void {
    this.#hasPlace = false;
    this.backend.submit(cmd);
  }

  #cancelOutstanding(): void {
    const cmd = this.#outstanding;
    if (!cmd) return;
    if (this.#placeWait === 'start') this.#stopWaiting();
    else if (!this.backend.withdraw(cmd)) return;
    this.#outstanding = undefined;
    this.#writeRc(TPM_RC_CANCELED);
    this.#finishStart();
  }

  #finishStart(): void {
    this.#start = false;
    this.#raise(CRB_INT.start);
  }

  #writeRc(rc: number): void {
    if (this.#dirty < HEADER) this.#dirty = HEADER;
    this.#view.setUint16(0, TPM_ST_NO_SESSIONS, false);
    this.#view.setUint32(2, HEADER, false);
    this.#view.setUint32(6, rc, false);
  }

  #stopWaiting(): void {
    if (this.#placeWait === 'none') return;
    this.#placeWait = 'none';
    this.backend.stopAwaitingPlace(this);
  }

  /** Forgets whatever the departing locality had in progress; see the module comment. */
  #abandon(): void {
    this.#generation++;
    this.#stopWaiting();
    const cmd = this.#outstanding;
    if (cmd) this.backend.withdraw(cmd);
    this.#outstanding = undefined;
    if (this.#hasPlace) this.backend.release();
    this.#hasPlace = false;
    this.#readyPending = false;
    this.#start = false;
    this.#idle = true;
    this.#cancel = 0;
    this.#intSts = 0;
    if (this.#dirty > 0) this.#buf.fill(0, 0, this.#dirty);
    this.#dirty = 0;
  }

  #raise(bits: number): void {
    this.#intSts |= bits;
    this.#maybeInterrupt();
  }

  #interruptPending(): boolean {
    return (this.#intEnable & CRB_INT.globalEnable) !== 0 && (this.#intEnable & this.#intSts & 0xf) !== 0;
  }

  #maybeInterrupt(): void {
    if (this.#irqWaiters.length > 0 && this.#interruptPending()) this.#wake();
  }

  #wake(): void {
    const waiters = this.#irqWaiters;
    this.#irqWaiters = [];
    for (const w of waiters) w();
  }

  #violation(kind: CrbViolation, result: number): number {
    this.violations.set(kind, (this.violations.get(kind) ?? 0) + 1);
    return result;
  }
}

function aligned(offset: number): boolean {
  return Number.isInteger(offset) && offset >= 0 && offset < CRB_LOCALITIES * CRB_LOCALITY_WINDOW && (offset & 3) === 0;
}
