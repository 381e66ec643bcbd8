//! A unified diff of one text file (the daemon's `patch` op), so that a save
//! sends the lines that changed, not the file. Common prefix and suffix are
//! cut first (an edit is usually local); what is left is diffed with Myers'
//! algorithm up to a bound on the edit distance, past which it becomes one
//! replacing hunk: the diff stays correct, only larger.

/** Lines with their newline, so a last line without one is its own token. */
export function splitLines(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

/** Past this many inserted plus deleted lines, the middle is one replacement. */
const MAX_EDIT_DISTANCE = 2000;
const CONTEXT = 3;

type Op = "=" | "-" | "+";

/** The edit script of `a` into `b` (both already without common ends). */
function myers(a: string[], b: string[]): Op[] {
  const n = a.length;
  const m = b.length;
  const max = Math.min(n + m, MAX_EDIT_DISTANCE);
  const offset = max + 1;
  let v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  for (let d = 0; d <= max; d++) {
    trace.push(v.slice());
    const next = v.slice();
    for (let k = -d; k <= d; k += 2) {
      let x: number;
      if (k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1])) x = v[offset + k + 1];
      else x = v[offset + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      next[offset + k] = x;
      if (x >= n && y >= m) return backtrack(trace, next, offset, n, m, d);
    }
    v = next;
  }
  // Too far apart: replace the whole middle.
  return [...Array<Op>(n).fill("-"), ...Array<Op>(m).fill("+")];
}

function backtrack(trace: Int32Array[], last: Int32Array, offset: number, n: number, m: number, dEnd: number): Op[] {
  const ops: Op[] = [];
  let x = n;
  let y = m;
  for (let d = dEnd; d > 0; d--) {
    const v = trace[d];
    const k = x - y;
    const down = k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1]);
    const prevK = down ? k + 1 : k - 1;
    const prevX = v[offset + prevK];
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      ops.push("=");
      x--;
      y--;
    }
    if (down) {
      ops.push("+");
      y--;
    } else {
      ops.push("-");
      x--;
    }
  }
  while (x > 0 && y > 0) {
    ops.push("=");
    x--;
    y--;
  }
  void last;
  return ops.reverse();
}

/** A unified diff turning `oldText` into `newText`; "" when they are equal. */
export function unifiedDiff(oldText: string, newText: string): string {
  if (oldText === newText) return "";
  // Only the lines around the change are split: a save of a big file costs
  // one pass over it, not two arrays of all its lines.
  const [start, oldEnd, newEnd] = changedWindow(oldText, newText);
  let offset = 0;
  for (let i = oldText.indexOf("\n"); i >= 0 && i < start; i = oldText.indexOf("\n", i + 1)) offset++;
  const a = splitLines(oldText.slice(start, oldEnd));
  const b = splitLines(newText.slice(start, newEnd));
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const middle = myers(a.slice(pre, a.length - suf), b.slice(pre, b.length - suf));
  const ops: Op[] = [...Array<Op>(pre).fill("="), ...middle, ...Array<Op>(suf).fill("=")];
  return hunks(ops, a, b, offset);
}

/** Where the texts differ, widened to whole lines and CONTEXT lines more on
 * each side: [start, end in old, end in new]; both texts are equal before
 * `start` and after their ends. */
function changedWindow(a: string, b: string): [number, number, number] {
  const max = Math.min(a.length, b.length);
  let p = 0;
  while (p < max && a.charCodeAt(p) === b.charCodeAt(p)) p++;
  let start = p === 0 ? 0 : a.lastIndexOf("\n", p - 1) + 1;
  for (let i = 0; i < CONTEXT && start > 0; i++) start = start < 2 ? 0 : a.lastIndexOf("\n", start - 2) + 1;
  let s = 0;
  while (s < a.length - start && s < b.length - start && a.charCodeAt(a.length - 1 - s) === b.charCodeAt(b.length - 1 - s)) s++;
  let end = a.length - s;
  for (let i = 0; i <= CONTEXT && end < a.length; i++) {
    if (i === 0 && (end === 0 || a.charCodeAt(end - 1) === 10)) continue;
    const nl = a.indexOf("\n", end);
    end = nl < 0 ? a.length : nl + 1;
  }
  return [start, end, b.length - (a.length - end)];
}

function hunks(ops: Op[], a: string[], b: string[], offset: number): string {
  // Old and new line index before each op.
  const at: [number, number][] = [];
  let i = 0;
  let j = 0;
  for (const op of ops) {
    at.push([i, j]);
    if (op !== "+") i++;
    if (op !== "-") j++;
  }
  at.push([i, j]);
  const out: string[] = [];
  let k = 0;
  while (k < ops.length) {
    if (ops[k] === "=") {
      k++;
      continue;
    }
    // A hunk: from CONTEXT lines before this change to CONTEXT after the
    // last change that is at most 2*CONTEXT equal lines from the one before.
    const start = Math.max(0, k - CONTEXT);
    while (true) {
      while (k < ops.length && ops[k] !== "=") k++;
      let run = 0;
      while (k + run < ops.length && ops[k + run] === "=") run++;
      if (k + run < ops.length && run <= 2 * CONTEXT) {
        k += run;
        continue;
      }
      k = Math.min(ops.length, k + Math.min(run, CONTEXT));
      break;
    }
    const [os, ns] = at[start];
    const [oe, ne] = at[k];
    const body: string[] = [];
    for (let t = start; t < k; t++) {
      const [oi, ni] = at[t];
      const line = ops[t] === "+" ? b[ni] : a[oi];
      const tag = ops[t] === "=" ? " " : ops[t];
      if (line.endsWith("\n")) body.push(tag + line);
      else body.push(`${tag}${line}\n\\ No newline at end of file\n`);
    }
    const oldLen = oe - os;
    const newLen = ne - ns;
    // GNU convention: an empty side names the line before it.
    const oldStart = offset + (oldLen === 0 ? os : os + 1);
    const newStart = offset + (newLen === 0 ? ns : ns + 1);
    out.push(`@@ -${oldStart},${oldLen} +${newStart},${newLen} @@\n`, ...body);
  }
  return out.join("");
}
