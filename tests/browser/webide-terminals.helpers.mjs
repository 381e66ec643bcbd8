// Helpers for the Web IDE's terminals (tests/browser/webide-terminals.test.mjs
// and bench/webide_terminal.mjs): open a terminal from VS Code's profile
// picker, type into it, read what it shows.
import assert from "node:assert/strict";
import { shot } from "./helpers.mjs";

/** Chromium without WebGL: VS Code then draws terminals with its DOM renderer, whose text the page holds. */
export const WEBGL_OFF = { args: ["--disable-3d-apis"] };

/** The text of the terminal VS Code shows (the visible one). */
export async function terminalText(page) {
  return page.evaluate(() => {
    const rows = [...document.querySelectorAll(".terminal.xterm .xterm-rows")].find((r) => r.offsetParent !== null);
    return rows ? rows.innerText.replace(/\u00a0/g, " ") : "";
  });
}

export async function waitForTerminal(page, pred, what, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let text = "";
  while (Date.now() < deadline) {
    text = await terminalText(page);
    if (pred(text)) return text;
    await page.waitForTimeout(50);
  }
  await shot(page, "webide-terminals-failed");
  throw new Error(`the terminal never showed ${what}; it shows:\n${text}`);
}

export const PROMPT = (t) => /[#$] ?$/.test(t.trimEnd());

/** Opens a terminal of `profile` (a label of the profile picker). */
export async function newTerminal(page, profile = "Workspace") {
  // VS Code offers the command once it has taken in the extension's
  // profiles, which can come after the workbench shows: ask until it does.
  const label = "Create New Terminal (With Profile)";
  const input = page.locator(".quick-input-widget input");
  const row = page.locator(`.quick-input-list .monaco-list-row[aria-label*="${label}"]`).first();
  const deadline = Date.now() + 60000;
  for (;;) {
    await page.keyboard.press("F1");
    await input.waitFor();
    await input.fill(`>${label}`);
    try {
      await row.waitFor({ timeout: 3000 });
      break;
    } catch (e) {
      await page.keyboard.press("Escape");
      if (Date.now() > deadline) {
        await shot(page, "webide-terminals-failed");
        throw e;
      }
    }
  }
  await page.keyboard.press("Enter");
  const picker = page.locator(".quick-input-widget input[placeholder*='terminal profile']");
  await picker.waitFor();
  await picker.fill(profile);
  const first = page.locator(".quick-input-list .monaco-list-row").first();
  await first.locator(".label-name", { hasText: profile }).waitFor();
  assert.equal((await first.locator(".label-name").innerText()).trim(), profile, "the profile is offered");
  await page.keyboard.press("Enter");
}

/** Types a line into the focused terminal. */
export async function typeLine(page, line) {
  await page.locator(".terminal.xterm textarea").filter({ visible: true }).first().focus();
  await page.keyboard.type(`${line}\n`);
}

