// Helpers for the Web IDE's terminals (tests/browser/webide-terminals.test.mjs
// and bench/webide_terminal.mjs): open a terminal from VS Code's profile
// picker, type into it, read what it shows.
import assert from "node:assert/strict";
import { pollUntil, shot } from "./helpers.mjs";

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
  return pollUntil(() => terminalText(page), pred, async (text) => {
    await shot(page, "webide-terminals-failed");
    return new Error(`the terminal never showed ${what}; it shows:\n${text}`);
  }, { timeout });
}

export const PROMPT = (t) => /[#$] ?$/.test(t.trimEnd());

/** The extension's commands that open a terminal: in this container, or in
 * one picked from the workspace's containers. (VS Code's own "Create New
 * Terminal (With Profile)" is offered only in some page loads of the web
 * workbench: see NEW_TERMINAL_HERE_COMMAND in the extension.) */
export const HERE = "Workspace: New Terminal";
export const OTHER = "Workspace: New Terminal in a Container of the Workspace…";

/** Runs `command` (HERE or OTHER) from the command palette. */
export async function newTerminal(page, command = HERE) {
  const input = page.locator(".quick-input-widget input");
  await page.keyboard.press("F1");
  await input.waitFor();
  await input.fill(`>${command}`);
  // Exactly this command (a recently used one may be listed first).
  const exact = new RegExp(`^${command.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
  const row = page.locator(".quick-input-list .monaco-list-row").filter({
    has: page.locator(".label-name", { hasText: exact }),
  });
  await row.first().click();
}

/** Types a line into the focused terminal. */
export async function typeLine(page, line) {
  await page.locator(".terminal.xterm textarea").filter({ visible: true }).first().focus();
  await page.keyboard.type(`${line}\n`);
}

