// The Web IDE's host page: takes the workspace daemon's URL and a credential
// from the embedding page, checks them against the daemon, and only then
// starts the browser-only VS Code build with the extension and a workspace
// folder on the extension's file system. A missing or refused credential is
// said in plain words and nothing of the workbench is loaded.
//
// The embedding page hands over the configuration either in the URL
// fragment (`#daemon=<url>&credential=<token or JWT>`, never sent to a
// server; kept in sessionStorage for reloads and removed from the address
// bar) or, when it embeds this page in an iframe, by answering the
// `{type:"workspaced-ready"}` message with
// `{type:"workspaced-config", daemon, credential}`.

const STORAGE_KEY = "workspaced-web-ide";
// Where the VS Code build and the extension are, relative to this page (the
// server names their versioned paths in meta elements).
const meta = (name, fallback) => new URL(document.querySelector(`meta[name="${name}"]`)?.content || fallback, location.href);
const VSCODE = meta("workspaced-vscode", "./vscode/");
const EXTENSION = meta("workspaced-extension", "./extension/");

function fail(text) {
  document.getElementById("problem-text").textContent = text;
  document.getElementById("problem").hidden = false;
  document.title = "Workspace: cannot open";
}

function fromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const daemon = params.get("daemon");
  const credential = params.get("credential");
  if (daemon === null && credential === null) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return { daemon: daemon ?? "", credential: credential ?? "" };
}

function fromStorage() {
  try {
    const v = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "null");
    return v && typeof v === "object" ? v : null;
  } catch {
    return null;
  }
}

function fromParent() {
  if (window.parent === window) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), 5000);
    window.addEventListener("message", (ev) => {
      if (ev.source !== window.parent || ev.data?.type !== "workspaced-config") return;
      clearTimeout(timer);
      resolve({ daemon: String(ev.data.daemon ?? ""), credential: String(ev.data.credential ?? "") });
    });
    window.parent.postMessage({ type: "workspaced-ready" }, "*");
  });
}

/** Null when the daemon takes the credential, else what to tell the user. */
async function check(cfg) {
  let base;
  try {
    base = new URL(cfg.daemon);
    if (base.protocol !== "http:" && base.protocol !== "https:") throw new Error("not http");
  } catch {
    return `The workspace address "${cfg.daemon}" is not an http or https URL.`;
  }
  let resp;
  try {
    resp = await fetch(new URL("api/v1/status", base.href.endsWith("/") ? base : `${base.href}/`), {
      headers: { Authorization: `Bearer ${cfg.credential}` },
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    return `The workspace at ${base.origin} cannot be reached (it may be stopped, or it does not allow this page's origin ${location.origin}).`;
  }
  if (resp.status === 401) return "The workspace refused the credential: it is wrong or has expired. Open the Web IDE again from the workspace's page.";
  if (resp.status === 403) return "The credential is valid but may not open this workspace (only its owner may).";
  if (!resp.ok) return `The workspace answered ${resp.status} when asked for its status.`;
  return null;
}

async function start(cfg) {
  const daemon = new URL(cfg.daemon);
  globalThis._VSCODE_FILE_ROOT = new URL("out/", VSCODE).href;
  const css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = new URL("out/vs/workbench/workbench.web.main.internal.css", VSCODE).href;
  document.head.append(css);
  // Every script of the workbench is asked for at once. The messages and
  // the 19 MB main script are classic scripts (webide-dist.sh makes the
  // main one so), run in the order they are inserted: Chromium keeps the
  // compiled code of a classic script and reads it back on the next loads,
  // where a module's is made but never used (about 0.5 s of parsing on
  // every load on a 2-core machine; docs/benchmarks.md).
  const workbench = new URL("workbench.js", VSCODE).href;
  const link = document.createElement("link");
  link.rel = "modulepreload";
  link.href = workbench;
  document.head.append(link);
  await Promise.all(["out/nls.messages.js", "out/vs/workbench/workbench.web.main.internal.js"].map((file) => {
    const src = new URL(file, VSCODE).href;
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.async = false;
      script.onload = resolve;
      script.onerror = () => reject(new Error(`${src} could not be loaded`));
      document.head.append(script);
    });
  }));
  const { default: create } = await import(workbench);
  create(document.body, {
    productConfiguration: {
      nameShort: "Workspace",
      nameLong: "Workspace Web IDE",
      applicationName: "workspaced-web-ide",
      dataFolderName: ".workspaced-web-ide",
      extensionEnabledApiProposals: {},
    },
    folderUri: { scheme: "workspaced", authority: daemon.host, path: "/" },
    additionalBuiltinExtensions: [{ scheme: EXTENSION.protocol.slice(0, -1), authority: EXTENSION.host, path: EXTENSION.pathname.replace(/\/$/, "") }],
    // The extension asks for the daemon and the credential through this command.
    commands: [{ id: "workspaced.hostConfig", handler: () => ({ daemon: cfg.daemon, credential: cfg.credential }) }],
    configurationDefaults: {
      "workbench.startupEditor": "none",
      // A save is the user's act: what reaches the disk, and when a conflict is shown, follows it.
      "files.autoSave": "off",
      "security.workspace.trust.enabled": false,
      "workbench.tips.enabled": false,
      "extensions.ignoreRecommendations": true,
      // Work a start would do for features this workbench has not: no chat
      // model or agent is configured (they read .mcp.json, .claude/ and
      // .github/copilot/ through the daemon at every start), no gallery to
      // check for updates, no telemetry endpoint, no walkthroughs, and no
      // task runner to detect tasks for.
      "chat.disableAIFeatures": true,
      "extensions.autoCheckUpdates": false,
      "extensions.autoUpdate": false,
      "update.mode": "none",
      "telemetry.telemetryLevel": "off",
      "workbench.enableExperiments": false,
      "workbench.welcomePage.walkthroughs.openOnInstall": false,
      "task.autoDetect": "off",
    },
  });
}

async function main() {
  const cfg = fromFragment() ?? fromStorage() ?? (await fromParent());
  if (!cfg || !cfg.daemon) {
    fail("No workspace was given to the Web IDE. Open it from the workspace's page, which passes the workspace's address and a credential.");
    return;
  }
  if (!cfg.credential) {
    fail("No credential was given for the workspace. Open the Web IDE again from the workspace's page.");
    return;
  }
  const problem = await check(cfg);
  if (problem) {
    sessionStorage.removeItem(STORAGE_KEY);
    fail(problem);
    return;
  }
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(cfg));
  await start(cfg);
}

main().catch((e) => fail(`The Web IDE failed to start: ${e?.message ?? e}`));
