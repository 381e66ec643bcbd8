// The console and the workspace's other containers: a terminal opened in
// the second container (a daemon in its own mount namespace, relayed by the
// first) shows that container's OS, and its tab says where it runs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startDaemon, launchBrowser, waitForScreen, shot, staticBinary, TOKEN } from "./helpers.mjs";

const OTHER_OS = "Alpine Linux v3.21 (browser test)";

test("the console opens a terminal in the second container and shows its OS", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "ws-containers-"));
  const osRelease = path.join(dir, "os-release");
  writeFileSync(osRelease, `NAME="Alpine Linux"\nID=alpine\nPRETTY_NAME="${OTHER_OS}"\n`);
  const second = await startDaemon([], { GL_WORKSPACE_CONTAINER: "db", OS_RELEASE: osRelease }, {
    bin: staticBinary,
    launcher: ["unshare", "--mount", "--propagation", "private", "sh", "-c",
      'mount --bind "$OS_RELEASE" /etc/os-release && exec "$@"', "sh"],
  });
  const config = path.join(dir, "workspaced.toml");
  writeFileSync(config, `[containers]\ndb = "http://${second.addr}"\n`);
  const first = await startDaemon(["--config", config]);
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(first.url(`/?access_token=${TOKEN}`));
    const picker = page.locator("#container-picker");
    await picker.waitFor({ state: "visible" });
    const options = await picker.locator("option").allTextContents();
    assert.equal(options.length, 2);
    assert.match(options[0], /^main/);
    assert.equal(options[1], `db (${OTHER_OS})`);

    await picker.selectOption("db");
    await page.click("#new-terminal");
    await page.waitForSelector(".tab.active");
    assert.equal(await page.locator(".tab.active .container").textContent(), "db");
    await waitForScreen(page, (t) => /[#$] ?$/.test(t.trimEnd()), "the shell prompt in the second container");
    await page.keyboard.type("grep PRETTY_NAME /etc/os-release\n");
    await waitForScreen(page, (t) => t.includes(`PRETTY_NAME="${OTHER_OS}"`), "the second container's OS");
    await shot(page, "containers-1-second-container");

    const list = await (await first.api("/api/v1/terminals")).json();
    assert.equal(list.length, 1);
    assert.equal(list[0].container, "db");
    assert.ok(list[0].id.startsWith("db."), list[0].id);

    // A reload brings the tab back, still labelled with its container.
    await page.reload();
    await page.waitForSelector(".tab.active");
    assert.equal(await page.locator(".tab.active .container").textContent(), "db");
    await waitForScreen(page, (t) => t.includes(`PRETTY_NAME="${OTHER_OS}"`), "the screen after the reload");

    // A terminal of this container is labelled with this container's name.
    await picker.selectOption("main");
    await page.click("#new-terminal");
    await page.waitForFunction(() => document.querySelectorAll(".tab").length === 2);
    assert.equal(await page.locator(".tab.active .container").textContent(), "main");
    assert.ok(!first.log().includes(TOKEN) && !second.log().includes(TOKEN), "the token is not logged");
  } finally {
    await browser.close();
    await first.stop();
    await second.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
