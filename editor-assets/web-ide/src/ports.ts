//! The workspace's ports (PROTOCOL.md "Ports"): a view that lists each port
//! with its process and visibility, kept current by the event stream;
//! actions to change a port's visibility and to open it in the browser
//! (`open` gives a single-use ticket URL for a host-routed port, so the new
//! tab gets its own session for that host); and a notification, with
//! "Open in Browser", when a port that appeared while the Web IDE was open
//! turns out to speak HTTP.

import * as vscode from "vscode";
import { Daemon, DaemonError } from "./api";
import type { DaemonEvent, Events } from "./events";

export const VISIBILITIES = ["none", "private", "internal", "public"] as const;
export type Visibility = (typeof VISIBILITIES)[number];

/** `Port` of the contract. */
export interface PortInfo {
  port: number;
  protocol: string;
  address: string | null;
  pid?: number;
  process?: string;
  name: string | null;
  source: "detected" | "devfile" | string;
  visibility: Visibility;
  url: string;
  http: boolean | null;
}

export const VIEW = "workspaced.ports";
export const OPEN_COMMAND = "workspaced.ports.open";
export const VISIBILITY_COMMAND = "workspaced.ports.setVisibility";
export const REFRESH_COMMAND = "workspaced.ports.refresh";

const VISIBILITY_TEXT: Record<string, string> = {
  none: "not reachable through the proxy",
  private: "only you",
  internal: "members of the workspace",
  public: "anyone with the URL",
};

function isPort(p: unknown): p is PortInfo {
  const o = p as PortInfo | null;
  return !!o && typeof o.port === "number" && Number.isInteger(o.port) && o.port > 0 && o.port < 65536 && typeof o.visibility === "string";
}

/** A port's row: number and name, then process and visibility. */
function label(p: PortInfo): string {
  return p.name ? `${p.port} (${p.name})` : String(p.port);
}

export class Ports implements vscode.TreeDataProvider<PortInfo> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;
  private ports = new Map<number, PortInfo>();
  /** Ports listening when the Web IDE first listed them: old news, never notified. */
  private known = new Set<number>();
  /** Ports already notified while they stay open. */
  private readonly notified = new Set<number>();
  private loaded = false;

  constructor(private readonly daemon: Daemon) {}

  getTreeItem(p: PortInfo): vscode.TreeItem {
    const item = new vscode.TreeItem(label(p), vscode.TreeItemCollapsibleState.None);
    const process = p.process ?? (p.address === null ? "not listening" : "");
    item.description = [process, p.visibility].filter(Boolean).join(" · ");
    // Plain text: a command line is the workspace's to write, never markup for the editor to render.
    item.tooltip = [
      `Port ${p.port}${p.name ? ` (${p.name})` : ""}`,
      p.process ? `Process: ${p.process}${p.pid ? ` (pid ${p.pid})` : ""}` : "",
      `Visibility: ${p.visibility}, ${VISIBILITY_TEXT[p.visibility] ?? ""}`,
      p.http === true ? "Serves HTTP" : p.http === false ? "Not HTTP" : "",
      `URL: ${p.url}`,
    ]
      .filter(Boolean)
      .join("\n");
    item.iconPath = new vscode.ThemeIcon(p.address === null ? "circle-outline" : p.visibility === "public" ? "globe" : "plug");
    item.contextValue = `port.${p.visibility}${p.http === false ? ".nothttp" : ""}`;
    item.id = String(p.port);
    return item;
  }

  getChildren(el?: PortInfo): PortInfo[] {
    if (el) return [];
    return [...this.ports.values()].sort((a, b) => a.port - b.port);
  }

  /** Reads the whole list again (at start and after the event stream dropped). */
  async load(): Promise<void> {
    const { body } = await this.daemon.json<unknown[]>("api/v1/ports");
    if (!Array.isArray(body)) throw new DaemonError("bad_answer", "the workspace's list of ports is not a list", 200);
    const next = new Map<number, PortInfo>();
    for (const p of body) if (isPort(p)) next.set(p.port, p);
    if (!this.loaded) this.known = new Set([...next.values()].filter((p) => p.address !== null).map((p) => p.port));
    this.loaded = true;
    for (const port of this.notified) if (!next.has(port)) this.notified.delete(port);
    this.ports = next;
    this.changed.fire();
    for (const p of next.values()) this.maybeNotify(p);
  }

  onEvent(ev: DaemonEvent): void {
    if (ev.type === "port_closed") {
      if (typeof ev.port !== "number") return;
      this.ports.delete(ev.port);
      this.known.delete(ev.port);
      this.notified.delete(ev.port);
      this.changed.fire();
      return;
    }
    if (!isPort(ev.port)) return;
    this.ports.set(ev.port.port, ev.port);
    this.changed.fire();
    this.maybeNotify(ev.port);
  }

  /** A port that appeared while the Web IDE was open and answers HTTP is announced, once while it stays open. */
  private maybeNotify(p: PortInfo): void {
    if (!this.loaded || p.http !== true || p.address === null || this.known.has(p.port) || this.notified.has(p.port)) return;
    this.notified.add(p.port);
    const what = p.process ? ` (${p.process.length > 60 ? `${p.process.slice(0, 57)}...` : p.process})` : "";
    void vscode.window
      .showInformationMessage(`Port ${p.port}${what} is serving HTTP in the workspace.`, "Open in Browser")
      .then((choice) => {
        if (choice === "Open in Browser") return this.open(p.port);
      });
  }

  /** Opens the port in a new browser tab: the URL `open` gives (with its single-use ticket when host-routed). */
  async open(port: number): Promise<void> {
    try {
      const { body } = await this.daemon.json<{ url?: unknown }>(`api/v1/ports/${port}/open`, { method: "POST" });
      if (typeof body.url !== "string") throw new DaemonError("bad_answer", "the workspace gave no URL for the port", 200);
      const url = new URL(body.url);
      if (url.protocol !== "http:" && url.protocol !== "https:") throw new DaemonError("bad_answer", `the port's URL is not http or https: ${url.protocol}`, 200);
      // `true`: the ticket goes out exactly as the daemon wrote it.
      await vscode.env.openExternal(vscode.Uri.parse(url.href, true));
    } catch (e) {
      void vscode.window.showErrorMessage(`Workspace: port ${port} could not be opened: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** Asks for a visibility and sets it; above the workspace's `max_visibility` the daemon says no, and that is shown. */
  async chooseVisibility(port: number): Promise<void> {
    const current = this.ports.get(port)?.visibility;
    const items = VISIBILITIES.map((v) => ({
      label: v,
      description: v === current ? "current" : undefined,
      detail: VISIBILITY_TEXT[v],
      visibility: v,
    }));
    const pick = await vscode.window.showQuickPick(items, { placeHolder: `Who may reach port ${port} through its URL?` });
    if (!pick || pick.visibility === current) return;
    try {
      const { body } = await this.daemon.json<unknown>(`api/v1/ports/${port}`, { method: "PUT", json: { visibility: pick.visibility } });
      if (isPort(body)) {
        this.ports.set(body.port, body);
        this.changed.fire();
      }
    } catch (e) {
      const msg =
        e instanceof DaemonError && e.code === "visibility_not_allowed"
          ? `the workspace does not allow ports to be ${pick.visibility} (${e.message})`
          : e instanceof Error
            ? e.message
            : String(e);
      void vscode.window.showErrorMessage(`Workspace: port ${port}: ${msg}`);
    }
  }
}

/** A command's argument: the view passes the row's `PortInfo`; the palette passes nothing (then ask). */
async function portArg(ports: Ports, arg: unknown): Promise<number | undefined> {
  if (isPort(arg)) return arg.port;
  if (typeof arg === "number") return arg;
  const list = ports.getChildren();
  const pick = await vscode.window.showQuickPick(
    list.map((p) => ({ label: label(p), description: p.process, port: p.port })),
    { placeHolder: "Which port?" },
  );
  return pick?.port;
}

export function registerPorts(context: vscode.ExtensionContext, daemon: Daemon, events: Events): Ports {
  const ports = new Ports(daemon);
  const load = () =>
    ports.load().catch((e) => {
      void vscode.window.showErrorMessage(`Workspace: the workspace's ports could not be listed: ${e instanceof Error ? e.message : String(e)}`);
    });
  context.subscriptions.push(
    vscode.window.createTreeView(VIEW, { treeDataProvider: ports }),
    events.on("port_opened", (ev) => ports.onEvent(ev)),
    events.on("port_changed", (ev) => ports.onEvent(ev)),
    events.on("port_closed", (ev) => ports.onEvent(ev)),
    events.onReconnect(() => void load()),
    vscode.commands.registerCommand(OPEN_COMMAND, async (arg?: unknown) => {
      const port = await portArg(ports, arg);
      if (port !== undefined) await ports.open(port);
    }),
    vscode.commands.registerCommand(VISIBILITY_COMMAND, async (arg?: unknown) => {
      const port = await portArg(ports, arg);
      if (port !== undefined) await ports.chooseVisibility(port);
    }),
    vscode.commands.registerCommand(REFRESH_COMMAND, () => load()),
  );
  void load();
  return ports;
}
