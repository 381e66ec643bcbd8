// The web console in a real browser: sign-in, terminals that survive a
// reload with the right screen, and no content without a credential.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { startDaemon, launchBrowser, waitForScreen, screenText, shot, TOKEN } from "./helpers.mjs";

test("terminals in the console survive a reload with the right screen", async () => {
  const d = await startDaemon();
  const browser = await launchBrowser();
  try {
    writeFileSync(path.join(d.workspace, "notes.txt"), "alpha line\nbeta line\n");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(d.url(`/?access_token=${TOKEN}`));
    assert.equal(new URL(page.url()).search, "", "the token is removed from the URL");
    await page.waitForSelector("#new-terminal");
    await shot(page, "console-1-empty");

    await page.click("#new-terminal");
    await page.waitForSelector(".tab.active");
    await waitForScreen(page, (t) => /[#$]$/.test(t.trimEnd()), "the shell prompt");
    await page.keyboard.type("echo hello-$((6*7))\n");
    await waitForScreen(page, (t) => t.includes("hello-42"), "the echo");
    await shot(page, "console-2-terminal");

    await page.keyboard.type("vim -u NONE -N notes.txt\n");
    await waitForScreen(page, (t) => t.includes("alpha line") && t.includes("~"), "vim");
    await page.keyboard.type("GOgamma typed\u001b");
    const before = await waitForScreen(page, (t) => t.includes("gamma typed"), "the typed line");
    const list = await (await d.api("/api/v1/terminals")).json();
    assert.equal(list.length, 1);

    await page.reload();
    await page.waitForSelector(".tab.active");
    const after = await waitForScreen(page, (t) => t.includes("gamma typed") && t.includes("alpha line"), "vim after the reload");
    await shot(page, "console-3-after-reload");
    const rows = (s) => s.split("\n").map((l) => l.trimEnd()).filter((l) => l.includes("line") || l.includes("gamma"));
    assert.deepEqual(rows(after), rows(before));
    const again = await (await d.api("/api/v1/terminals")).json();
    assert.equal(again.length, 1);
    assert.equal(again[0].id, list[0].id, "the same terminal came back");
    assert.equal(await page.locator(".tab").count(), 1);

    // Leave vim, close the tab: the terminal is gone.
    await page.keyboard.type(":q!\n");
    await waitForScreen(page, (t) => !t.includes("gamma typed"), "the shell after vim");
    await page.click(".tab.active .close");
    const deadline = Date.now() + 10000;
    while ((await (await d.api("/api/v1/terminals")).json()).length && Date.now() < deadline) await page.waitForTimeout(50);
    assert.equal((await (await d.api("/api/v1/terminals")).json()).length, 0);
    assert.ok(!d.log().includes(TOKEN), "the token is not logged");
  } finally {
    await browser.close();
    await d.stop();
  }
});

test("without a credential the console is never served", async () => {
  const d = await startDaemon();
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    const resp = await page.goto(d.url("/"));
    assert.equal(resp.status(), 401);
    const text = await page.innerText("body");
    assert.match(text, /token/i);
    assert.equal(await page.locator("#new-terminal").count(), 0);
    await shot(page, "console-0-sign-in");
    // Signing in through the form works.
    await page.fill("input[name=access_token]", TOKEN);
    await page.click("button[type=submit]");
    await page.waitForSelector("#new-terminal");
    for (const p of ["/assets/app.js", "/api/v1/terminals"]) {
      const r = await fetch(d.url(p));
      assert.equal(r.status, 401, p);
    }
  } finally {
    await browser.close();
    await d.stop();
  }
});

test("a server started in the console's terminal shows up and can be made public", async () => {
  const d = await startDaemon(["--idle-timeout", "6", "--warn-before", "4"]);
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(d.url(`/?access_token=${TOKEN}`));
    await page.click("#new-terminal");
    await page.waitForSelector(".tab.active");
    await waitForScreen(page, (t) => /[#$]$/.test(t.trimEnd()), "the shell prompt");
    await page.keyboard.type("python3 -m http.server 0 --bind 127.0.0.1\n");
    const text = await waitForScreen(page, (t) => /Serving HTTP on \S+ port \d+/.test(t), "the server");
    const port = /port (\d+)/.exec(text)[1];
    const started = Date.now();
    const row = page.locator(`#ports tr[data-port="${port}"]`);
    await row.waitFor({ timeout: 2000 });
    const within = Date.now() - started;
    assert.ok(within <= 2000, `the port appeared after ${within} ms`);
    assert.match(await row.innerText(), /python3/);
    // Private: no content without a credential.
    const url = d.url(`/proxy/${port}/`);
    assert.equal((await fetch(url)).status, 401);
    await row.locator("select").selectOption("public");
    const deadline = Date.now() + 5000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = (await fetch(url)).status;
      if (status !== 200) await page.waitForTimeout(50);
    }
    assert.equal(status, 200, "the public port answers without a credential");
    assert.match(await (await fetch(url)).text(), /Directory listing/);
    await shot(page, "console-4-ports");
    // The idle warning shows before the stop.
    await page.locator("#banner:not([hidden])").waitFor({ timeout: 15000 });
    assert.match(await page.innerText("#banner"), /stop/i);
    await shot(page, "console-5-idle-warning");
  } finally {
    await browser.close();
    await d.stop();
  }
});

test("signing out in one tab sends every tab of the console back to the sign-in page", async () => {
  const d = await startDaemon();
  const browser = await launchBrowser();
  try {
    const context = await browser.newContext();
    const first = await context.newPage();
    await first.goto(d.url(`/?access_token=${TOKEN}`));
    await first.waitForSelector("#new-terminal");
    const second = await context.newPage();
    await second.goto(d.url("/"));
    await second.waitForSelector("#new-terminal");
    const [{ value: session }] = (await context.cookies()).filter((c) => c.name === "workspaced_session");
    assert.notEqual(session, TOKEN, "the cookie names a session, not the token");

    await first.click("#sign-out");
    await first.waitForSelector("input[name=access_token]");
    await shot(first, "console-6-signed-out");
    // The other tab's next call is refused, and it shows the sign-in page too.
    await second.click("#new-terminal");
    await second.waitForSelector("input[name=access_token]");
    assert.equal((await (await d.api("/api/v1/terminals")).json()).length, 0, "no terminal was opened");
    const stale = await fetch(d.url("/api/v1/terminals"), { headers: { cookie: `workspaced_session=${session}` } });
    assert.equal(stale.status, 401);
    assert.equal(stale.headers.get("www-authenticate"), "Bearer");
  } finally {
    await browser.close();
    await d.stop();
  }
});
