//! The workspace's terminals in VS Code (PROTOCOL.md "Terminals"): each is a
//! `Pseudoterminal` over the attach WebSocket. The extension counts the
//! output bytes it has shown, so a dropped connection resumes from exactly
//! there (`offset=N`, no gap, no repeat); after a page reload it reattaches
//! to every live terminal without an offset, which makes the daemon replay
//! the current screen. VS Code's terminal profiles are fixed in
//! package.json, so there are two: "Workspace" (this container) and
//! "Workspace: Other Container…", which asks which one.

import * as vscode from "vscode";
import { Daemon, DaemonError } from "./api";

/** `Terminal` of the contract, the fields read here. */
export interface TerminalInfo {
  id: string;
  title: string;
  cols: number;
  rows: number;
  exited: boolean;
  output_offset: number;
  container: string | null;
}

/** An entry of `GET /api/v1/containers`. */
export interface ContainerInfo {
  name: string;
  self: boolean;
  state: "ready" | "unreachable" | string;
  os: string | null;
}

export const PROFILE = "workspaced.terminal";
export const PROFILE_CONTAINER = "workspaced.terminal.container";
export const NEW_TERMINAL_COMMAND = "workspaced.newTerminal";
/** A terminal in this container, by a command of its own: VS Code's web
 * workbench offers the profiles only once a refresh of its profile list
 * has run after the extensions' contributions were read, which some page
 * loads never do (then "Create New Terminal (With Profile)" stays hidden). */
export const NEW_TERMINAL_HERE_COMMAND = "workspaced.newTerminalHere";

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;
/** Input typed while the connection is down, kept for when it is back; more is dropped. */
const MAX_PENDING_INPUT = 64 * 1024;
/** The contract's range for `cols` and `rows`. */
const MAX_SIZE = 1000;

function clampSize(n: number | undefined, fallback: number): number {
  if (!n || !Number.isFinite(n)) return fallback;
  return Math.min(MAX_SIZE, Math.max(1, Math.floor(n)));
}

/** Ends a terminal in the workspace, in the background (one already gone is fine). */
function deleteTerminal(daemon: Daemon, id: string): void {
  void daemon.request(`api/v1/terminals/${encodeURIComponent(id)}`, { method: "DELETE", accept: [404] }).catch(() => {});
}

/** What a terminal tab is called: the container in front when it is not this one. */
function nameOf(info: Pick<TerminalInfo, "title" | "container">, self: string | undefined): string {
  return info.container && info.container !== self ? `${info.container}: ${info.title}` : info.title;
}

/** Either a terminal to create on open, or a live one to reattach to. */
type Target = { create: { container?: string } } | { attach: TerminalInfo };

/** One of the workspace's terminals, shown by VS Code. */
export class DaemonPty implements vscode.Pseudoterminal {
  private readonly writeEmitter = new vscode.EventEmitter<string>();
  private readonly closeEmitter = new vscode.EventEmitter<number | void>();
  private readonly nameEmitter = new vscode.EventEmitter<string>();
  readonly onDidWrite = this.writeEmitter.event;
  readonly onDidClose = this.closeEmitter.event;
  readonly onDidChangeName = this.nameEmitter.event;

  /** Made by the user now, not reattached after a reload. */
  get isNew(): boolean {
    return "create" in this.target;
  }

  /** The daemon's id, once created. */
  id: string | null = null;
  /** The offset of the next output byte this terminal has not shown; null before the first attach. */
  private offset: number | null = null;
  /** Whether the program is at a prompt with echo off (a password); kept for clients that show local echo. */
  echo = true;
  private ws: WebSocket | null = null;
  private decoder = new TextDecoder("utf-8");
  private cols = 80;
  private rows = 24;
  private pendingInput: Uint8Array[] = [];
  private pendingBytes = 0;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private readonly encoder = new TextEncoder();

  /** The terminal asked for before VS Code opened the tab (`startEarly`). */
  private creating: Promise<TerminalInfo> | null = null;
  private opened = false;

  constructor(
    private readonly daemon: Daemon,
    private readonly target: Target,
    private readonly selfContainer: string | undefined,
  ) {}

  /** Asks the daemon for the terminal now, not when VS Code opens the tab:
   * the shell starts while VS Code draws the panel (0.2 to 0.5 s), and
   * `open` attaches from offset 0, which gives what it printed meanwhile.
   * At 80x24; the attach sends the tab's size. Only for a terminal shown at
   * once (`Terminals.create`), and one closed before it opened is deleted. */
  startEarly(): void {
    if (!("create" in this.target) || this.creating) return;
    this.creating = this.post();
    // Said by `open`, which awaits it; not an unhandled rejection meanwhile.
    this.creating.catch(() => {});
  }

  private async post(): Promise<TerminalInfo> {
    const container = "create" in this.target ? this.target.create.container : undefined;
    const { body } = await this.daemon.json<TerminalInfo>("api/v1/terminals", {
      method: "POST",
      json: { cols: this.cols, rows: this.rows, ...(container ? { container } : {}) },
    });
    return body;
  }

  async open(dims: vscode.TerminalDimensions | undefined): Promise<void> {
    this.opened = true;
    this.cols = clampSize(dims?.columns, 80);
    this.rows = clampSize(dims?.rows, 24);
    if ("attach" in this.target) {
      this.id = this.target.attach.id;
      // No offset: the daemon replays the screen as it is now.
      this.connect();
      return;
    }
    try {
      const body = await (this.creating ?? this.post());
      if (this.closed) {
        // Closed while it was being made: nobody will ever see it.
        deleteTerminal(this.daemon, body.id);
        return;
      }
      this.id = body.id;
      this.nameEmitter.fire(nameOf(body, this.selfContainer));
      // From the first byte: nothing of the new terminal's output is missed.
      this.offset = 0;
      this.connect();
    } catch (e) {
      this.fail(`the workspace could not start a terminal: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  close(): void {
    // The tab is gone (closed by the user, or the page unloads): only the
    // connection ends here. Whether the terminal is killed is decided by
    // `onDidCloseTerminal`, which knows why it closed.
    this.closed = true;
    if (!this.opened && this.creating) {
      // Made early for a tab that never opened: nobody will ever see it.
      void this.creating.then((b) => deleteTerminal(this.daemon, b.id)).catch(() => {});
    }
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.ws?.close();
    this.ws = null;
  }

  handleInput(data: string): void {
    const bytes = this.encoder.encode(data);
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN && this.offset !== null) {
      ws.send(bytes);
      return;
    }
    if (this.pendingBytes + bytes.length > MAX_PENDING_INPUT) return;
    this.pendingInput.push(bytes);
    this.pendingBytes += bytes.length;
  }

  setDimensions(dims: vscode.TerminalDimensions): void {
    this.cols = clampSize(dims.columns, this.cols);
    this.rows = clampSize(dims.rows, this.rows);
    this.sendResize();
  }

  private sendResize(): void {
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "resize", cols: this.cols, rows: this.rows }));
  }

  private fail(message: string): void {
    this.writeEmitter.fire(`\r\n\x1b[31m${message}\x1b[0m\r\n`);
    this.closed = true;
  }

  private connect(): void {
    if (this.closed || !this.id) return;
    const params: Record<string, string> = {};
    if (this.offset !== null) params.offset = String(this.offset);
    const ws = new WebSocket(this.daemon.wsUrl(`api/v1/terminals/${encodeURIComponent(this.id)}/attach`, params));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let attached = false;
    ws.onmessage = (msg) => {
      if (this.ws !== ws) return;
      if (typeof msg.data !== "string") {
        if (!attached || this.offset === null) return;
        const bytes = new Uint8Array(msg.data as ArrayBuffer);
        this.offset += bytes.length;
        const text = this.decoder.decode(bytes, { stream: true });
        if (text) this.writeEmitter.fire(text);
        return;
      }
      let frame: { type?: string; [k: string]: unknown };
      try {
        frame = JSON.parse(msg.data);
      } catch {
        return;
      }
      switch (frame.type) {
        case "attached": {
          attached = true;
          this.retryMs = RETRY_MIN_MS;
          if (typeof frame.offset === "number") this.offset = frame.offset;
          if (typeof frame.echo === "boolean") this.echo = frame.echo;
          // A screen replay draws the whole screen again: start a fresh UTF-8 sequence.
          if (frame.replay === "screen") this.decoder = new TextDecoder("utf-8");
          this.sendResize();
          for (const bytes of this.pendingInput.splice(0)) ws.send(bytes);
          this.pendingBytes = 0;
          return;
        }
        case "lagged":
          // This client fell behind and was skipped ahead: the output goes on from K.
          if (typeof frame.offset === "number") this.offset = frame.offset;
          this.decoder = new TextDecoder("utf-8");
          return;
        case "mode":
          if (typeof frame.echo === "boolean") this.echo = frame.echo;
          return;
        case "exit": {
          this.closed = true;
          const code = typeof frame.code === "number" ? frame.code : undefined;
          this.closeEmitter.fire(code);
          return;
        }
        case "shutdown":
          this.writeEmitter.fire("\r\n\x1b[33m[the workspace is shutting down]\x1b[0m\r\n");
          return;
        default:
          return;
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!this.closed) void this.retry();
    };
  }

  /** After a drop: gone terminals and refused credentials end the tab; anything else is retried. */
  private async retry(): Promise<void> {
    if (!this.id) return;
    try {
      await this.daemon.request(`api/v1/terminals/${encodeURIComponent(this.id)}`);
    } catch (e) {
      if (e instanceof DaemonError && e.status === 404) {
        this.fail("[the terminal no longer exists in the workspace]");
        this.closeEmitter.fire();
        return;
      }
      if (e instanceof DaemonError && e.isCredential) {
        this.fail(`[${e.message}]`);
        return;
      }
    }
    if (this.closed) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }
}

export class Terminals {
  private selfContainer: string | undefined;

  constructor(private readonly daemon: Daemon) {}

  async containers(): Promise<ContainerInfo[]> {
    const { body } = await this.daemon.json<ContainerInfo[]>("api/v1/containers");
    if (!Array.isArray(body)) throw new DaemonError("bad_answer", "the workspace's list of containers is not a list", 200);
    this.selfContainer = body.find((c) => c.self)?.name ?? this.selfContainer;
    return body;
  }

  /** A new terminal in `container` (this one when absent), shown. */
  create(container?: string): vscode.Terminal {
    const pty = new DaemonPty(this.daemon, { create: { container } }, this.selfContainer);
    pty.startEarly();
    const name = container && container !== this.selfContainer ? `${container}: shell` : "shell";
    const terminal = vscode.window.createTerminal({ name, pty });
    terminal.show();
    return terminal;
  }

  profile(container?: string): vscode.TerminalProfile {
    const pty = new DaemonPty(this.daemon, { create: { container } }, this.selfContainer);
    const name = container && container !== this.selfContainer ? `${container}: shell` : "shell";
    return new vscode.TerminalProfile({ name, pty });
  }

  /** Asks which container (ready ones, this one first); undefined when the user cancels. */
  async pickContainer(): Promise<string | undefined> {
    const list = await this.containers();
    const items = list.map((c) => ({
      label: c.name,
      description: c.self ? "this container" : c.state === "ready" ? undefined : c.state,
      detail: c.os ?? undefined,
      container: c.name,
    }));
    const pick = await vscode.window.showQuickPick(items, { placeHolder: "Open a terminal in which container of the workspace?" });
    return pick?.container;
  }

  /** Shows every live terminal of the workspace again (after a reload), with its screen as it is now. */
  async reattach(): Promise<void> {
    // Both at once: the containers only name the tabs, the list is what is shown.
    const [, { body }] = await Promise.all([
      this.containers().catch(() => undefined),
      this.daemon.json<TerminalInfo[]>("api/v1/terminals"),
    ]);
    if (!Array.isArray(body)) return;
    for (const info of body) {
      if (info.exited || typeof info.id !== "string") continue;
      const pty = new DaemonPty(this.daemon, { attach: info }, this.selfContainer);
      vscode.window.createTerminal({ name: nameOf(info, this.selfContainer), pty });
    }
  }

  /** Called for every closed terminal: the user's close kills it in the workspace, a reload does not. */
  onClosed(terminal: vscode.Terminal): void {
    const pty = (terminal.creationOptions as Partial<vscode.ExtensionTerminalOptions>).pty;
    if (!(pty instanceof DaemonPty) || !pty.id || terminal.exitStatus?.reason !== vscode.TerminalExitReason.User) return;
    deleteTerminal(this.daemon, pty.id);
  }
}

/** Registers the profiles and the command, and reattaches to the workspace's live terminals. */
export function registerTerminals(context: vscode.ExtensionContext, daemon: Daemon): Terminals {
  const terminals = new Terminals(daemon);
  context.subscriptions.push(
    vscode.window.registerTerminalProfileProvider(PROFILE, { provideTerminalProfile: () => terminals.profile() }),
    vscode.window.registerTerminalProfileProvider(PROFILE_CONTAINER, {
      provideTerminalProfile: async () => {
        const container = await terminals.pickContainer();
        return container === undefined ? undefined : terminals.profile(container);
      },
    }),
    vscode.commands.registerCommand(NEW_TERMINAL_HERE_COMMAND, () => terminals.create()),
    vscode.commands.registerCommand(NEW_TERMINAL_COMMAND, async (container?: unknown) => {
      const name = typeof container === "string" ? container : await terminals.pickContainer();
      if (name !== undefined) terminals.create(name);
    }),
    vscode.window.onDidCloseTerminal((t) => terminals.onClosed(t)),
    // A terminal the user asked for is shown (VS Code leaves one made from
    // the profile picker of the command palette in a hidden panel); a
    // reattached one waits until the user looks.
    vscode.window.onDidOpenTerminal((t) => {
      const pty = (t.creationOptions as Partial<vscode.ExtensionTerminalOptions>).pty;
      if (pty instanceof DaemonPty && pty.isNew) t.show();
    }),
  );
  terminals.reattach().catch((e) => {
    void vscode.window.showErrorMessage(`Workspace: the workspace's terminals could not be listed: ${e instanceof Error ? e.message : String(e)}`);
  });
  return terminals;
}
