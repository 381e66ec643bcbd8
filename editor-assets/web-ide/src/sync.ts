//! The sync WebSocket (`/api/v1/sync`): changes on disk flow to the file
//! system provider, applies flow to the daemon on the same connection (so
//! their events carry this client's origin), and after a drop the
//! connection resumes from the last event seen (`since`/`epoch`).

import { Daemon, DaemonError } from "./api";
import type { ApplyOutcome, ApplyResult, Change, Conflict, SyncFrame } from "./wire";

/** How long an apply may wait for its answer. */
const APPLY_TIMEOUT_MS = 60_000;
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;

export interface SyncHandlers {
  onEvent(frame: SyncFrame): void;
  onResync(): void;
  /** Connected (hello received) or not; `error` when the daemon refused us. */
  onState(connected: boolean, error?: DaemonError): void;
}

interface Pending {
  resolve(o: ApplyOutcome): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export class Sync {
  private ws: WebSocket | null = null;
  private client: string | null = null;
  private epoch: string | null = null;
  private seq: number | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private readonly helloWaiters: (() => void)[] = [];
  private expiryTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly daemon: Daemon,
    private readonly handlers: SyncHandlers,
  ) {}

  clientId(): string | null {
    return this.client;
  }

  /** Resolves once the first hello arrived (or at once after a failure: applies then go over HTTP). */
  ready(): Promise<void> {
    if (this.client || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.helloWaiters.push(resolve));
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  /** True once the credential has passed its expiry: nothing more goes over
   * a socket it opened, so the daemon judges every change afresh. */
  private expired(): boolean {
    const exp = this.daemon.credentialExpiry();
    return exp !== null && Date.now() >= exp;
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.ws?.close();
    this.ws = null;
    this.failPending(new DaemonError("closed", "the Web IDE was closed", 0));
  }

  private connect(): void {
    const params: Record<string, string> = {};
    if (this.seq !== null && this.epoch !== null) {
      params.since = String(this.seq);
      params.epoch = this.epoch;
    }
    const ws = new WebSocket(this.daemon.wsUrl("api/v1/sync", params));
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") return;
      const frame = parseFrame(ev.data);
      if (frame) this.onFrame(frame);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      const wasConnected = this.client !== null;
      this.client = null;
      this.failPending(new DaemonError("disconnected", "the connection to the workspace dropped before the save was confirmed", 0));
      if (wasConnected) this.handlers.onState(false);
      void this.retry();
    };
  }

  private async retry(): Promise<void> {
    if (this.stopped) return;
    if (this.expired()) {
      this.giveUp(new DaemonError("credential_expired", "the credential has expired: open the Web IDE again from the workspace's page", 401));
      return;
    }
    // A refused upgrade looks like any drop to a page: ask the daemon why.
    try {
      await this.daemon.request("api/v1/status");
    } catch (e) {
      if (e instanceof DaemonError && e.isCredential) {
        this.giveUp(e);
        return;
      }
    }
    const wait = this.retryMs;
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  /** The credential is no good: stop, and say so once. Applies go over
   * HTTP from now on, so the daemon refuses them with its own words. */
  private giveUp(e: DaemonError): void {
    this.stopped = true;
    this.handlers.onState(false, e);
    for (const w of this.helloWaiters.splice(0)) w();
  }

  private onFrame(frame: SyncFrame): void {
    switch (frame.type) {
      case "hello": {
        const resumed = this.epoch === frame.epoch && this.seq !== null;
        this.client = frame.client;
        if (!resumed) this.seq = frame.seq;
        this.epoch = frame.epoch;
        this.retryMs = RETRY_MIN_MS;
        this.closeAtExpiry();
        this.handlers.onState(true);
        for (const w of this.helloWaiters.splice(0)) w();
        return;
      }
      case "resync":
        this.handlers.onResync();
        return;
      case "changed":
      case "deleted":
      case "git":
        this.seq = frame.seq;
        this.handlers.onEvent(frame);
        return;
      case "applied":
      case "conflict":
      case "error": {
        const p = typeof frame.id === "number" ? this.pending.get(frame.id) : undefined;
        if (!p) return;
        this.pending.delete(frame.id as number);
        clearTimeout(p.timer);
        if (frame.type === "applied") p.resolve({ results: frame.results });
        else if (frame.type === "conflict") p.resolve({ conflicts: frame.conflicts });
        else p.reject(new DaemonError(frame.error.code, frame.error.message, 400, frame));
        return;
      }
      default:
        return;
    }
  }

  private closeAtExpiry(): void {
    const exp = this.daemon.credentialExpiry();
    if (exp === null) return;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    // setTimeout's delay is a 32-bit signed count of ms.
    const wait = Math.min(Math.max(0, exp - Date.now()), 2 ** 31 - 1);
    this.expiryTimer = setTimeout(() => {
      // The daemon does not end a WebSocket when the JWT that opened it expires.
      if (this.expired()) this.ws?.close();
      else this.closeAtExpiry();
    }, wait);
  }

  private failPending(e: Error): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(e);
      this.pending.delete(id);
    }
  }

  async apply(changes: Change[]): Promise<ApplyOutcome> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.client || this.expired()) return this.applyHttp(changes);
    const id = this.nextId++;
    return new Promise<ApplyOutcome>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new DaemonError("timeout", "the workspace did not confirm the change in time", 0));
      }, APPLY_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ type: "apply", id, changes, atomic: true }));
    });
  }

  private async applyHttp(changes: Change[]): Promise<ApplyOutcome> {
    const { status, body } = await this.daemon.json<{ results?: ApplyResult[]; conflicts?: Conflict[] }>("api/v1/sync/apply", {
      method: "POST",
      json: { changes, atomic: true },
      accept: [409],
    });
    if (status === 409) return { conflicts: body.conflicts ?? [] };
    return { results: body.results ?? [] };
  }
}

/** A frame from the daemon, or null when it is not one this client can act
 * on (bytes from a peer are checked before they are used). */
export function parseFrame(text: string): SyncFrame | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const f = v as Record<string, unknown>;
  const str = (k: string) => typeof f[k] === "string";
  const seq = typeof f.seq === "number" && Number.isSafeInteger(f.seq) && f.seq >= 0;
  switch (f.type) {
    case "hello":
      return str("client") && str("epoch") && seq ? (v as SyncFrame) : null;
    case "changed":
      return seq && str("path") && str("kind") && typeof f.size === "number" && (f.oid === undefined || str("oid")) ? (v as SyncFrame) : null;
    case "deleted":
      return seq && str("path") && str("kind") ? (v as SyncFrame) : null;
    case "git":
      return seq ? (v as SyncFrame) : null;
    case "applied":
      return Array.isArray(f.results) ? (v as SyncFrame) : null;
    case "conflict":
      return Array.isArray(f.conflicts) ? (v as SyncFrame) : null;
    case "error":
      return typeof f.error === "object" && f.error !== null ? (v as SyncFrame) : null;
    case "resync":
    case "shutdown":
      return v as SyncFrame;
    default:
      return null;
  }
}
