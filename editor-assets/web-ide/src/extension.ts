//! The Web IDE's extension: asks the host page for the daemon's URL and a
//! credential, checks them, and serves the workspace to VS Code as a file
//! system kept live by the sync connection. Terminals, ports and idle are
//! registered from their own modules.

import * as vscode from "vscode";
import { Daemon, DaemonError } from "./api";
import { SCHEME, WorkspaceFs, pathOf } from "./files";
import { Sync } from "./sync";
import { Events } from "./events";
import { registerTerminals } from "./terminals";
import { registerPorts } from "./ports";
import { registerIdle } from "./idle";

/** What the host page hands over through its `workspaced.hostConfig` command. */
export interface HostConfig {
  daemon: string;
  credential: string;
}

/** What the rest of the extension (terminals, ports, idle) builds on. */
export interface Workspace {
  daemon: Daemon;
  fs: WorkspaceFs;
  sync: Sync;
  root: vscode.Uri;
}

let current: Workspace | undefined;

/** The connected workspace, for the modules registered after activation. */
export function workspace(): Workspace | undefined {
  return current;
}

async function hostConfig(): Promise<HostConfig> {
  let cfg: unknown;
  try {
    cfg = await vscode.commands.executeCommand("workspaced.hostConfig");
  } catch {
    cfg = undefined;
  }
  const c = cfg as Partial<HostConfig> | undefined;
  if (!c || typeof c.daemon !== "string" || !c.daemon) {
    throw new DaemonError("no_config", "the page that opened the Web IDE gave no workspace URL", 0);
  }
  if (typeof c.credential !== "string" || !c.credential) {
    throw new DaemonError("no_credential", "the page that opened the Web IDE gave no credential for the workspace", 0);
  }
  return { daemon: c.daemon, credential: c.credential };
}

/** Says plainly why the workspace cannot be opened. */
function refuse(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  void vscode.window.showErrorMessage(`Workspace: ${msg}`, { modal: true });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const folder = vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === SCHEME);
  const root = folder?.uri ?? vscode.Uri.from({ scheme: SCHEME, authority: "workspace", path: "/" });
  let cfg: HostConfig;
  try {
    cfg = await hostConfig();
  } catch (e) {
    refuse(e);
    throw e;
  }
  const daemon = new Daemon(cfg.daemon, cfg.credential);
  // One call that needs the credential, so a wrong one is said at once,
  // plainly. The host page has just checked it before loading anything, so
  // the file system is registered meanwhile rather than a round trip later
  // (the explorer waits for it); if the daemon refuses after all, all that
  // was registered goes again.
  const checked = daemon.request("api/v1/status");

  const registered: vscode.Disposable[] = [];
  let fs: WorkspaceFs | undefined;
  const sync = new Sync(daemon, {
    onEvent: (frame) => fs?.onSyncEvent(frame),
    onResync: () => {
      const open = vscode.workspace.textDocuments.filter((d) => d.uri.scheme === SCHEME).map((d) => pathOf(d.uri));
      fs?.onResync(open);
      void vscode.commands.executeCommand("workbench.files.action.refreshFilesExplorer");
    },
    onState: (_connected, error) => {
      if (error) void vscode.window.showErrorMessage(`Workspace: ${error.message}`);
    },
  });
  fs = new WorkspaceFs(daemon, sync, root);
  registered.push(
    vscode.workspace.registerFileSystemProvider(SCHEME, fs, { isCaseSensitive: true }),
    { dispose: () => sync.stop() },
  );
  try {
    await checked;
  } catch (e) {
    for (const d of registered) d.dispose();
    refuse(e);
    // Nothing stays registered: the workbench shows no half-working workspace.
    throw e;
  }
  context.subscriptions.push(...registered);
  sync.start();

  // Terminals, ports and idle: each its own module, over one event stream.
  const events = new Events(daemon);
  context.subscriptions.push({ dispose: () => events.stop() });
  registerTerminals(context, daemon);
  registerPorts(context, daemon, events);
  registerIdle(context, daemon, events);
  events.start();

  current = { daemon, fs, sync, root };
  // Terminals, ports, idle and the status bar register here, each from its
  // own module, with `current` and `context`.
}

export function deactivate(): void {
  current?.sync.stop();
  current = undefined;
}
