// The Web IDE (editor-assets/web-ide) in a real browser: Debian's chromium,
// the real VS Code web build, the real daemon on another origin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { launchBrowser, shot } from "./helpers.mjs";
import { startWebIde, openWebIde, explorerNames, openFromExplorer, waitForEditor } from "./webide.helpers.mjs";

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
