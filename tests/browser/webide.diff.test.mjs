// The Web IDE's pure parts against the real daemon, without a browser: the
// diffs a save sends apply exactly (the daemon's strict patch), and frames
// that are not the contract's are dropped before they are used.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { build } from "../../editor-assets/web-ide/node_modules/esbuild/lib/main.js";
import { startDaemon } from "./helpers.mjs";
import { webIde } from "./webide.helpers.mjs";

async function load(entry) {
  const dir = mkdtempSync(path.join(tmpdir(), "webide-unit-"));
  try {
    const outfile = path.join(dir, "m.mjs");
    await build({ entryPoints: [path.join(webIde, entry)], bundle: true, format: "esm", platform: "neutral", outfile, logLevel: "error" });
    return await import(outfile);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const oid = (s) => { const b = Buffer.from(s); return createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex"); };

test("every diff a save sends applies exactly, by the daemon's strict rules", async () => {
  const { unifiedDiff } = await load("src/diff.ts");
  const d = await startDaemon();
  try {
    let seed = 7;
    const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
    const words = ["a", "b", "c", "", "dd", "e\r", "ü", "\t x", "𝄞"];
    const text = (n) => { let s = ""; for (let i = 0; i < n; i++) s += words[rnd(words.length)] + (rnd(6) ? "\n" : ""); return s; };
    const cases = [["", "x"], ["x", ""], ["a\n", "a"], ["a", "a\n"], ["a\nb\nc\n", "c\nb\na\n"]];
    for (let i = 0; i < 250; i++) {
      const a = text(rnd(40));
      const lines = a.split("\n");
      for (let k = rnd(4); k >= 0; k--) lines.splice(rnd(lines.length + 1), rnd(3), ...(rnd(2) ? [words[rnd(words.length)]] : []));
      cases.push([a, rnd(5) ? lines.join("\n") : text(rnd(40))]);
    }
    const changes = [];
    const results = [];
    cases.forEach(([a, b], i) => {
      const diff = unifiedDiff(a, b);
      if (a === b) assert.equal(diff, "", "equal texts have no diff");
      else results.push([i, a, b, diff]);
    });
    for (const [i, a] of results) changes.push({ op: "write", path: `f${i}`, base: null, content: a });
    let r = await d.api("/api/v1/sync/apply", { method: "POST", body: JSON.stringify({ changes }) });
    assert.equal(r.status, 200);
    const patches = results.map(([i, a, , diff]) => ({ op: "patch", path: `f${i}`, base: oid(a), diff }));
    r = await d.api("/api/v1/sync/apply", { method: "POST", body: JSON.stringify({ changes: patches, atomic: false }) });
    const body = await r.json();
    assert.equal(r.status, 200);
    body.results.forEach((res, k) => {
      const [, a, b, diff] = results[k];
      assert.equal(res.oid, oid(b), `patch ${JSON.stringify(diff)} turns ${JSON.stringify(a)} into ${JSON.stringify(b)}: ${JSON.stringify(res.error ?? "")}`);
    });
  } finally {
    await d.stop();
  }
});

test("a local change to a 20,000-line file is a diff of a few lines", async () => {
  const { unifiedDiff } = await load("src/diff.ts");
  const lines = Array.from({ length: 20000 }, (_, i) => `line ${i}`);
  const a = `${lines.join("\n")}\n`;
  lines[12345] = "changed";
  lines.splice(500, 1);
  const diff = unifiedDiff(a, `${lines.join("\n")}\n`);
  assert.ok(diff.length < 300, diff);
  assert.equal(diff.split("\n").filter((l) => l.startsWith("@@")).length, 2, "two hunks");
});

test("sync frames that are not the contract's are dropped", async () => {
  const { parseFrame } = await load("src/sync.ts");
  const bad = [
    "not json", "null", "42", '"hello"', "[]", '{"type":"unknown"}',
    '{"type":"hello","client":1,"epoch":"e","seq":0}',
    '{"type":"hello","client":"c","epoch":"e","seq":-1}',
    '{"type":"changed","seq":1,"path":7,"kind":"file","size":1}',
    '{"type":"changed","seq":1.5,"path":"a","kind":"file","size":1}',
    '{"type":"changed","seq":1,"path":"a","kind":"file","size":"big"}',
    '{"type":"changed","seq":1,"path":"a","kind":"file","size":1,"oid":{}}',
    '{"type":"deleted","seq":1,"kind":"file"}',
    '{"type":"applied","id":1,"results":"no"}',
    '{"type":"conflict","id":1}',
    '{"type":"error","id":1,"error":"text"}',
  ];
  for (const f of bad) assert.equal(parseFrame(f), null, f);
  assert.deepEqual(parseFrame('{"type":"changed","seq":3,"path":"a/b","kind":"file","oid":"ab","size":2,"mode":"100644"}'),
    { type: "changed", seq: 3, path: "a/b", kind: "file", oid: "ab", size: 2, mode: "100644" });
  assert.deepEqual(parseFrame('{"type":"resync"}'), { type: "resync" });
});
