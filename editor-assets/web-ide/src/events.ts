//! The daemon's event stream (`/api/v1/events`, PROTOCOL.md "Health, status,
//! activity"), one WebSocket shared by the ports view and the idle status:
//! each event goes to the listeners of its type, and after a drop the
//! connection comes back with backoff and says so (`onReconnect`), since
//! the stream has no replay and a listener must re-read what it shows.

import { Daemon, DaemonError } from "./api";

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 10_000;

/** One event as the daemon sends it; `type` names the rest of its fields. */
export interface DaemonEvent {
  type: string;
  [field: string]: unknown;
}

type Listener = (ev: DaemonEvent) => void;

export class Events {
  private ws: WebSocket | null = null;
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly reconnectListeners = new Set<() => void>();
  private retryMs = RETRY_MIN_MS;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private everOpen = false;

  constructor(private readonly daemon: Daemon) {}

  /** Calls `fn` for every event of `type`; the result removes it. */
  on(type: string, fn: Listener): { dispose(): void } {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn);
    return { dispose: () => set.delete(fn) };
  }

  /** Calls `fn` each time the stream is open again after a drop (events may have been missed). */
  onReconnect(fn: () => void): { dispose(): void } {
    this.reconnectListeners.add(fn);
    return { dispose: () => this.reconnectListeners.delete(fn) };
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.ws?.close();
    this.ws = null;
  }

  private connect(): void {
    const ws = new WebSocket(this.daemon.wsUrl("api/v1/events"));
    this.ws = ws;
    ws.onopen = () => {
      this.retryMs = RETRY_MIN_MS;
      if (this.everOpen) for (const fn of this.reconnectListeners) fn();
      this.everOpen = true;
    };
    ws.onmessage = (msg) => {
      if (typeof msg.data !== "string") return;
      let ev: DaemonEvent;
      try {
        ev = JSON.parse(msg.data) as DaemonEvent;
      } catch {
        return;
      }
      if (!ev || typeof ev.type !== "string") return;
      // A listener that fails must not take the stream or the other listeners down.
      for (const fn of this.listeners.get(ev.type) ?? []) {
        try {
          fn(ev);
        } catch (e) {
          console.error(`workspaced: the ${ev.type} event's listener failed`, e);
        }
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      void this.retry();
    };
  }

  private async retry(): Promise<void> {
    if (this.stopped) return;
    // A refused upgrade looks like any drop: a credential that stopped working ends the stream.
    try {
      await this.daemon.request("api/v1/status");
    } catch (e) {
      if (e instanceof DaemonError && e.isCredential) {
        this.stopped = true;
        return;
      }
    }
    const wait = this.retryMs;
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }
}
