// Fixtures for the browser tests: the real daemon and Debian's chromium.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, "../..");
export const artifacts = path.join(root, "test-artifacts");
mkdirSync(artifacts, { recursive: true });

const target = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, "target");
// WORKSPACED_BUILD_PROFILE=release runs the release binaries (bench/editor.sh).
export const binary = path.join(target, process.env.WORKSPACED_BUILD_PROFILE || "debug", "workspaced");
export const TOKEN = "browser-test-token-0123456789";

// The static (musl) build: what runs in the workspace's other containers.
export const staticBinary = path.join(target, "x86_64-unknown-linux-musl", "debug", "workspaced");

/** Starts workspaced on 127.0.0.1:0 with extra flags; resolves once it serves.
 * `launcher` is a command that ends by exec'ing its arguments (the binary and its flags). */
export async function startDaemon(args = [], env = {}, { launcher = [], bin = binary, workspace = mkdtempSync(path.join(tmpdir(), "ws-browser-")) } = {}) {
  const state = mkdtempSync(path.join(tmpdir(), "ws-state-"));
  const argv = [...launcher, bin];
  const child = spawn(argv[0], [...argv.slice(1), "serve", "--listen", "127.0.0.1:0", "--workspace", workspace,
    "--name", "browser-test", "--state-dir", state, ...args], {
    // HOME is the state dir: login shells must not run this machine's dotfiles.
    env: { ...process.env, WORKSPACED_TOKEN: TOKEN, RUST_LOG: "info", SHELL: "/bin/bash", HOME: state, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`workspaced did not start:\n${log}`)), 20000);
    child.stderr.on("data", (d) => {
      log += d;
      const m = /serving listen=(\S+)/.exec(log);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on("exit", (code) => reject(new Error(`workspaced exited ${code}:\n${log}`)));
  });
  const api = (p, opts = {}) => fetch(`http://${addr}${p}`, { ...opts, headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json", ...(opts.headers || {}) } });
  return {
    addr, workspace, child, api,
    url: (p) => `http://${addr}${p}`,
    log: () => log,
    /** Deletes every terminal of the workspace (between benchmark runs). */
    deleteTerminals: async () => {
      for (const t of await (await api("/api/v1/terminals")).json()) await api(`/api/v1/terminals/${t.id}`, { method: "DELETE" });
    },
    stop: () => new Promise((resolve) => { child.once("exit", resolve); child.kill("SIGTERM"); }),
  };
}

/** Launches Debian's chromium; `env` replaces its environment (a HOME with an NSS db that trusts a test CA),
 * `args` are more flags. */
export async function launchBrowser({ env, args = [] } = {}) {
  return chromium.launch({ executablePath: "/usr/bin/chromium", args: [...CHROMIUM_ARGS, ...args], ...(env ? { env } : {}) });
}

/** The flags every browser of the tests and benchmarks runs with. */
export const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"];

/** Launches Debian's chromium on the profile in `dir` (its disk cache and
 * V8's code cache kept there, as a developer's browser keeps them); resolves
 * to a browser context. */
export async function launchProfile(dir, { args = [], viewport } = {}) {
  return chromium.launchPersistentContext(dir, { executablePath: "/usr/bin/chromium", args: [...CHROMIUM_ARGS, ...args], viewport });
}

/** The visible text of the active terminal. */
export async function screenText(page) {
  return page.evaluate(() => {
    const el = [...document.querySelectorAll(".screen")].find((s) => !s.hidden);
    return el ? el.querySelector(".xterm-rows").innerText : "";
  });
}

/** Reads with `read` every `every` ms until `pred` holds for what it gave
 * (which is returned); after `timeout` ms throws `fail(last)`. */
export async function pollUntil(read, pred, fail, { timeout = 15000, every = 50 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await read();
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, every));
  }
  throw await fail(last);
}

export async function waitForScreen(page, pred, what, timeout = 15000) {
  return pollUntil(() => screenText(page), pred, (text) => new Error(`terminal never showed ${what}; it shows:\n${text}`), { timeout });
}

export async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`) });
}
