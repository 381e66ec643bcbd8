//! Idle (PROTOCOL.md "Health, status, activity"): what the user does in the
//! editor (typing, moving around, saving, focusing the window) is reported
//! to the daemon as heartbeats (`POST /api/v1/activity`), throttled, since
//! the daemon only sees the API calls an edit makes and typing makes none;
//! the `idle_warning` event shows a notification whose "Keep working" sends
//! a heartbeat at once; and a status bar item shows the workspace's name,
//! its health (from its components) and the time left before an idle stop.

import * as vscode from "vscode";
import { Daemon } from "./api";
import type { DaemonEvent, Events } from "./events";

/** `Component` of the contract, the fields read here. */
interface Component {
  name: string;
  state: "starting" | "ready" | "degraded" | "crashed" | "stopped" | string;
  restarts?: number;
}

/** `Idle` of the contract, the fields read here. */
export interface IdleInfo {
  state: "active" | "idle" | string;
  last_activity: string;
  timeout_seconds: number | null;
  stop_at: string | null;
}

interface Status {
  workspace: { name: string };
  components: Component[];
  idle: IdleInfo;
}

/** At most one heartbeat per this long... */
const MAX_THROTTLE_MS = 30_000;
/** ...and at least, however short the timeout... */
const MIN_THROTTLE_MS = 1_000;
/** ...else a tenth of the idle timeout, so activity is never reported too late to count. */
const THROTTLE_SHARE = 10;
/** The status is read again this often (activity moves `stop_at` and has no event). */
const STATUS_EVERY_MS = 20_000;

export const STATUS_ITEM = "workspaced.status";
export const KEEP_WORKING = "Keep working";

/** The worst state among the components, in words; the components say the rest. */
export function health(components: Component[]): { word: string; icon: string } {
  const has = (s: string) => components.some((c) => c.state === s);
  if (has("crashed")) return { word: "crashed", icon: "error" };
  if (has("stopped")) return { word: "stopped", icon: "debug-stop" };
  if (has("starting")) return { word: "starting", icon: "loading~spin" };
  if (has("degraded")) return { word: "degraded", icon: "warning" };
  return { word: "healthy", icon: "pass" };
}

/** "1h 5m", "12m", "45s": the time left, at the precision that matters. */
export function timeLeft(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  if (s >= 120) return `${Math.floor(s / 60)}m`;
  return `${s}s`;
}

export class Idle {
  private readonly item: vscode.StatusBarItem;
  private status: Status | null = null;
  private lastSent = 0;
  private trailing: ReturnType<typeof setTimeout> | null = null;
  private trailingAt = 0;
  private readonly ticker: ReturnType<typeof setInterval>;
  private readonly poller: ReturnType<typeof setInterval>;

  constructor(private readonly daemon: Daemon) {
    this.item = vscode.window.createStatusBarItem(STATUS_ITEM, vscode.StatusBarAlignment.Left, 100);
    this.item.name = "Workspace";
    this.item.text = "$(loading~spin) Workspace";
    this.item.show();
    this.ticker = setInterval(() => this.render(), 1000);
    this.poller = setInterval(() => void this.refresh(), STATUS_EVERY_MS);
  }

  dispose(): void {
    clearInterval(this.ticker);
    clearInterval(this.poller);
    if (this.trailing) clearTimeout(this.trailing);
    this.item.dispose();
  }

  /** Reads the status (a passive read: it does not count as activity). */
  async refresh(): Promise<void> {
    try {
      const { body } = await this.daemon.json<Status>("api/v1/status");
      if (body && typeof body === "object" && body.idle && Array.isArray(body.components)) this.status = body;
    } catch {
      // The sync connection says when the workspace is unreachable; the item keeps its last state.
    }
    this.render();
  }

  private throttleMs(): number {
    const timeout = this.status?.idle.timeout_seconds;
    // Before the status is known, or without a timeout, the shortest: never report too late.
    if (!timeout) return this.status ? MAX_THROTTLE_MS : MIN_THROTTLE_MS;
    return Math.min(MAX_THROTTLE_MS, Math.max(MIN_THROTTLE_MS, (timeout * 1000) / THROTTLE_SHARE));
  }

  /** Something the user did: one heartbeat now, or one at the end of the throttle window. */
  activity(): void {
    const due = this.lastSent + this.throttleMs();
    const wait = due - Date.now();
    if (wait <= 0) {
      void this.heartbeat();
      return;
    }
    // A window computed before the timeout was known may be longer than it should be.
    if (this.trailing && this.trailingAt <= due) return;
    if (this.trailing) clearTimeout(this.trailing);
    this.trailingAt = due;
    this.trailing = setTimeout(() => {
      this.trailing = null;
      void this.heartbeat();
    }, wait);
  }

  async heartbeat(): Promise<void> {
    this.lastSent = Date.now();
    try {
      await this.daemon.request("api/v1/activity", { method: "POST" });
    } catch {
      return;
    }
    await this.refresh();
  }

  onWarning(ev: DaemonEvent): void {
    const stopAt = typeof ev.stop_at === "string" ? Date.parse(ev.stop_at) : NaN;
    const when = Number.isNaN(stopAt) ? "soon" : `at ${new Date(stopAt).toLocaleTimeString()} (in ${timeLeft(stopAt - Date.now())})`;
    void this.refresh();
    void vscode.window
      .showWarningMessage(`The workspace will stop ${when} unless there is activity.`, KEEP_WORKING)
      .then((choice) => {
        if (choice === KEEP_WORKING) return this.heartbeat();
      });
  }

  onIdle(): void {
    void this.refresh();
    void vscode.window.showWarningMessage("The workspace is idle: the platform may stop it now.");
  }

  private render(): void {
    const s = this.status;
    if (!s) return;
    const h = health(s.components);
    const stopAt = s.idle.stop_at ? Date.parse(s.idle.stop_at) : NaN;
    const left = Number.isNaN(stopAt) ? "" : s.idle.state === "idle" ? " · idle" : ` · ${timeLeft(stopAt - Date.now())} left`;
    this.item.text = `$(${h.icon}) ${s.workspace.name} · ${h.word}${left}`;
    // Plain text: names come from the workspace's configuration, not markup.
    const tip = [
      `Workspace ${s.workspace.name}: ${h.word}`,
      ...s.components.map((c) => `${c.name}: ${c.state}${c.restarts ? `, ${c.restarts} restarts` : ""}`),
      Number.isNaN(stopAt) ? "No idle stop is planned." : `Stops at ${new Date(stopAt).toLocaleTimeString()} unless there is activity.`,
    ].join("\n");
    this.item.tooltip = tip;
    this.item.backgroundColor =
      h.word === "crashed" ? new vscode.ThemeColor("statusBarItem.errorBackground") : h.word === "healthy" ? undefined : new vscode.ThemeColor("statusBarItem.warningBackground");
  }
}

export function registerIdle(context: vscode.ExtensionContext, daemon: Daemon, events: Events): Idle {
  const idle = new Idle(daemon);
  const active = () => idle.activity();
  context.subscriptions.push(
    idle,
    vscode.workspace.onDidChangeTextDocument((e) => {
      // Only the user's edits: output channels and the like change too.
      if (e.contentChanges.length > 0 && e.document.uri.scheme !== "output") active();
    }),
    vscode.workspace.onDidSaveTextDocument(active),
    vscode.window.onDidChangeTextEditorSelection(active),
    vscode.window.onDidChangeActiveTextEditor(active),
    vscode.window.onDidChangeWindowState((s) => {
      if (s.focused) active();
    }),
    events.on("idle_warning", (ev) => idle.onWarning(ev)),
    events.on("idle", () => idle.onIdle()),
    events.on("component_state", () => void idle.refresh()),
    events.onReconnect(() => void idle.refresh()),
  );
  void idle.refresh();
  return idle;
}
