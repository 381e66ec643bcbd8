//! The workspace as a VS Code `FileSystemProvider` over the daemon's tree,
//! files and apply routes. A save of a file the editor read is a `patch`
//! against the version (blob id) it read; VS Code's own "file is newer on
//! disk" flow sees a change through `stat`'s mtime, which this provider
//! advances whenever it learns of a new version of a path.

import * as vscode from "vscode";
import { Daemon, DaemonError, encodePath } from "./api";
import { unifiedDiff } from "./diff";
import type { ApplyOutcome, Change, Kind, SyncFrame, Tree, TreeEntry } from "./wire";

export const SCHEME = "workspaced";

/** Applies changes: over the sync connection when it is up (so their events
 * carry this client's origin), else over HTTP. */
export interface Applier {
  apply(changes: Change[]): Promise<ApplyOutcome>;
  /** The `client` id the daemon gave the sync connection, once it said hello. */
  clientId(): string | null;
}

/** What the provider knows of a path: its kind, version and a clock for VS
 * Code (mtime grows each time the version changes, never goes back). */
interface Known {
  kind: Kind;
  oid: string | null;
  size: number;
  mtime: number;
}

/** A version the editor read, as text, kept to diff a save against (a
 * binary file is not kept: it is always written whole). */
interface Read {
  oid: string;
  text: string;
}

/** Reads kept to diff against, in UTF-16 code units; the oldest go first past it. */
const MAX_READS_UNITS = 64 * 1024 * 1024;
/** Above this, a file is written whole (a diff would cost more than it saves). */
const MAX_DIFF_BYTES = 16 * 1024 * 1024;
/** How long the daemon's "no such path" is believed without asking again,
 * unless the sync connection or this client's own change says otherwise.
 * In the first seconds of a page load VS Code looks for the same absent
 * files (`.vscode/settings.json`, `tasks.json`, `launch.json`, `mcp.json`,
 * AI tools' settings) eight times over, about 100 requests, each a stat and
 * a read; they queue with the explorer's and the terminal's for the
 * browser's six connections to the daemon. Short, because a path that git
 * ignores is created without an event. */
const MISSING_FOR_MS = 2000;
/** At most this many absent paths are remembered (the oldest go first). */
const MAX_MISSING = 4096;

export function pathOf(uri: vscode.Uri): string {
  const p = uri.path.replace(/^\/+/, "").replace(/\/+$/, "");
  return p;
}

function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function fileType(kind: Kind): vscode.FileType {
  if (kind === "dir") return vscode.FileType.Directory;
  // The daemon reads a symlink as its target text and never follows it.
  if (kind === "symlink") return vscode.FileType.File | vscode.FileType.SymbolicLink;
  return vscode.FileType.File;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The text of `bytes` when they are UTF-8 without NUL, else null (binary). */
function textOf(bytes: Uint8Array): string | null {
  if (bytes.includes(0)) return null;
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** The git blob id of `bytes` (what the daemon calls a version). */
async function blobOid(bytes: Uint8Array): Promise<string> {
  const head = new TextEncoder().encode(`blob ${bytes.length}\0`);
  const all = new Uint8Array(head.length + bytes.length);
  all.set(head);
  all.set(bytes, head.length);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", all));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function oidOfEtag(etag: string | null): string | null {
  if (!etag) return null;
  return etag.replace(/^W\//, "").replace(/"/g, "").trim() || null;
}

/** A `DaemonError` as the `FileSystemError` VS Code understands. */
export function toFsError(e: unknown, uri: vscode.Uri): Error {
  if (e instanceof vscode.FileSystemError) return e;
  if (e instanceof DaemonError) {
    if (e.code === "not_found") return vscode.FileSystemError.FileNotFound(uri);
    if (e.code === "is_a_directory") return vscode.FileSystemError.FileIsADirectory(uri);
    if (e.code === "not_a_directory") return vscode.FileSystemError.FileNotADirectory(uri);
    if (e.isCredential) return vscode.FileSystemError.NoPermissions(e.message);
    return vscode.FileSystemError.Unavailable(e.message);
  }
  return vscode.FileSystemError.Unavailable(String(e));
}

export class WorkspaceFs implements vscode.FileSystemProvider {
  private readonly emitter = new vscode.EventEmitter<vscode.FileChangeEvent[]>();
  readonly onDidChangeFile = this.emitter.event;
  private readonly known = new Map<string, Known>();
  private readonly reads = new Map<string, Read>();
  private readsUnits = 0;
  /** Versions this client's writes in flight will leave, by path: their
   * events may come before the apply's answer and are not news. */
  private readonly writing = new Map<string, Set<string>>();
  /** Paths the daemon said are absent, and when (see MISSING_FOR_MS). */
  private readonly missing = new Map<string, number>();
  /** Looks of one path in flight (`HEAD` or `GET`), shared by callers that ask meanwhile. */
  private readonly looking = new Map<string, Promise<unknown>>();

  constructor(
    private readonly daemon: Daemon,
    private readonly applier: Applier,
    private readonly root: vscode.Uri,
  ) {}

  uri(path: string): vscode.Uri {
    return this.root.with({ path: `/${path}` });
  }

  /** Records a version of `path`; true when it is news. */
  private note(path: string, kind: Kind, oid: string | null, size: number): boolean {
    this.noteExists(path);
    const before = this.known.get(path);
    if (before && before.kind === kind && before.oid === oid && before.size === size) return false;
    const mtime = Math.max(Date.now(), (before?.mtime ?? 0) + 1);
    this.known.set(path, { kind, oid, size, mtime });
    return true;
  }

  /** True when `path` or a folder above it was found absent just now. */
  private knownMissing(path: string): boolean {
    const now = Date.now();
    for (let p = path; p !== ""; p = parentOf(p)) {
      const at = this.missing.get(p);
      if (at === undefined) continue;
      if (now - at < MISSING_FOR_MS) return true;
      this.missing.delete(p);
    }
    return false;
  }

  private noteMissing(path: string): void {
    // Deleted first, so that it goes to the end of the map's order (the newest).
    this.missing.delete(path);
    this.missing.set(path, Date.now());
    if (this.missing.size > MAX_MISSING) this.missing.delete(this.missing.keys().next().value!);
  }

  /** `path` exists now, and so do the folders above it. */
  private noteExists(path: string): void {
    if (this.missing.size === 0) return;
    for (let p = path; p !== ""; p = parentOf(p)) this.missing.delete(p);
  }

  /** One look at `path` for everyone who asks while it is in flight; those
   * who join one get `joined` of its answer. */
  private shared<T>(key: string, look: () => Promise<T>, joined: (v: T) => T = (v) => v): Promise<T> {
    const inflight = this.looking.get(key);
    if (inflight) return (inflight as Promise<T>).then(joined);
    const p = look().finally(() => this.looking.delete(key));
    this.looking.set(key, p);
    return p;
  }

  private forget(path: string): void {
    for (const map of [this.known, this.reads] as Map<string, unknown>[]) {
      for (const p of [...map.keys()]) {
        if (p === path || p.startsWith(`${path}/`)) {
          if (map === this.reads) this.dropRead(p);
          else map.delete(p);
        }
      }
    }
  }

  private remember(path: string, oid: string, bytes: Uint8Array): void {
    this.dropRead(path);
    if (bytes.length > MAX_DIFF_BYTES) return;
    const text = textOf(bytes);
    if (text === null) return;
    this.reads.set(path, { oid, text });
    this.readsUnits += text.length;
    for (const [p, r] of this.reads) {
      if (this.readsUnits <= MAX_READS_UNITS) break;
      this.reads.delete(p);
      this.readsUnits -= r.text.length;
    }
  }

  private dropRead(path: string): void {
    const r = this.reads.get(path);
    if (r) {
      this.reads.delete(path);
      this.readsUnits -= r.text.length;
    }
  }

  private stat0(k: Known): vscode.FileStat {
    return { type: fileType(k.kind), ctime: 0, mtime: k.mtime, size: k.size };
  }

  /** A directory's entries. The explorer lists without what git ignores (the
   * sync socket reports no change there); a lookup of one path needs them all. */
  private async list(path: string, ignored = false): Promise<TreeEntry[]> {
    const q = new URLSearchParams({ path, recursive: "false", ignored: String(ignored) });
    const { body } = await this.daemon.json<Tree>(`api/v1/tree?${q}`);
    for (const e of body.entries) this.note(e.path, e.kind, e.oid ?? null, e.size);
    return body.entries;
  }

  watch(): vscode.Disposable {
    // Every change comes over the one sync connection, watched or not.
    return new vscode.Disposable(() => {});
  }

  async stat(uri: vscode.Uri): Promise<vscode.FileStat> {
    const path = pathOf(uri);
    if (path === "") return { type: vscode.FileType.Directory, ctime: 0, mtime: 0, size: 0 };
    if (this.knownMissing(path)) throw vscode.FileSystemError.FileNotFound(uri);
    try {
      // A fresh look every time (a save's check against "newer on disk" runs
      // on it), shared only with the looks that overlap it.
      return await this.shared(`stat ${path}`, () => this.stat1(path, uri));
    } catch (e) {
      throw toFsError(e, uri);
    }
  }

  private async stat1(path: string, uri: vscode.Uri): Promise<vscode.FileStat> {
    const resp = await this.daemon.request(`api/v1/files/${encodePath(path)}`, { method: "HEAD", accept: [400, 404] });
    if (resp.status === 404) {
      this.forget(path);
      this.noteMissing(path);
      throw vscode.FileSystemError.FileNotFound(uri);
    }
    if (resp.ok) {
      const oid = oidOfEtag(resp.headers.get("etag"));
      const size = Number(resp.headers.get("content-length") ?? "0");
      const kind = this.known.get(path)?.kind === "symlink" ? "symlink" : "file";
      this.note(path, kind, oid, Number.isSafeInteger(size) ? size : 0);
      return this.stat0(this.known.get(path)!);
    }
    // 400: a directory (or something else that is not a file); the parent's listing says.
    const k = this.known.get(path);
    if (k?.kind === "dir") return this.stat0(k);
    const entry = (await this.list(parentOf(path), true)).find((e) => e.path === path);
    if (!entry) {
      this.noteMissing(path);
      throw vscode.FileSystemError.FileNotFound(uri);
    }
    return this.stat0(this.known.get(path)!);
  }

  async readDirectory(uri: vscode.Uri): Promise<[string, vscode.FileType][]> {
    const path = pathOf(uri);
    if (this.knownMissing(path)) throw vscode.FileSystemError.FileNotFound(uri);
    try {
      const entries = await this.list(path);
      return entries.map((e) => [baseName(e.path), fileType(e.kind)]);
    } catch (e) {
      if (e instanceof DaemonError && e.code === "not_found") this.noteMissing(path);
      throw toFsError(e, uri);
    }
  }

  async readFile(uri: vscode.Uri): Promise<Uint8Array> {
    const path = pathOf(uri);
    if (this.knownMissing(path)) throw vscode.FileSystemError.FileNotFound(uri);
    try {
      // A caller that joins a read gets its own buffer: VS Code may hand one on and transfer it.
      const { bytes, oid } = await this.shared(`read ${path}`, async () => {
        const resp = await this.daemon.request(`api/v1/files/${encodePath(path)}`);
        return { bytes: new Uint8Array(await resp.arrayBuffer()), oid: oidOfEtag(resp.headers.get("etag")) };
      }, (r) => ({ ...r, bytes: r.bytes.slice() }));
      if (oid) {
        const kind = this.known.get(path)?.kind === "symlink" ? "symlink" : "file";
        this.note(path, kind, oid, bytes.length);
        this.remember(path, oid, bytes);
      }
      return bytes;
    } catch (e) {
      if (e instanceof DaemonError && e.code === "not_found") this.noteMissing(path);
      throw toFsError(e, uri);
    }
  }

  async writeFile(uri: vscode.Uri, content: Uint8Array, options: { create: boolean; overwrite: boolean }): Promise<void> {
    const path = pathOf(uri);
    // VS Code stats right before a write, so `known` is the disk as of now.
    const k = this.known.get(path);
    if (k?.kind === "dir") throw vscode.FileSystemError.FileIsADirectory(uri);
    if (!k && !options.create) throw vscode.FileSystemError.FileNotFound(uri);
    if (k && !options.overwrite) throw vscode.FileSystemError.FileExists(uri);
    const change = this.changeFor(path, k, content);
    // The disk already holds exactly this content.
    if (change === null) return;
    const expected = await blobOid(content);
    const pending = this.writing.get(path) ?? new Set<string>();
    pending.add(expected);
    this.writing.set(path, pending);
    try {
      let outcome = await this.applier.apply([change]);
      if ("conflicts" in outcome && change.op === "patch" && outcome.conflicts.every((c) => c.code === "patch_does_not_apply")) {
        // The diff should always apply; if it does not, the whole file against the same base is as safe.
        outcome = await this.applier.apply([this.wholeWrite(path, change.base, content)]);
      }
      if ("conflicts" in outcome) {
        const c = outcome.conflicts[0];
        if (c?.actual) this.note(path, k?.kind === "symlink" ? "symlink" : "file", c.actual, k?.size ?? 0);
        else this.forget(path);
        this.emitter.fire([{ type: vscode.FileChangeType.Changed, uri }]);
        throw vscode.FileSystemError.Unavailable(
          `${path} changed on disk since it was read; save again to compare or overwrite`,
        );
      }
      const oid = outcome.results[0]?.oid;
      if (oid) {
        this.note(path, k?.kind === "symlink" ? "symlink" : "file", oid, content.length);
        this.remember(path, oid, content);
      }
    } catch (e) {
      throw toFsError(e, uri);
    } finally {
      pending.delete(expected);
      if (pending.size === 0 && this.writing.get(path) === pending) this.writing.delete(path);
    }
  }

  /** A patch against the version read when that is still the disk's, else the whole file. */
  private changeFor(path: string, k: Known | undefined, content: Uint8Array): Change | null {
    if (!k || !k.oid) return this.wholeWrite(path, null, content);
    const r = this.reads.get(path);
    if (r && r.oid === k.oid && content.length <= MAX_DIFF_BYTES) {
      const after = textOf(content);
      if (after !== null) {
        const diff = unifiedDiff(r.text, after);
        if (diff === "") return null;
        if (diff.length < content.length) return { op: "patch", path, base: k.oid, diff };
      }
    }
    // Not read, binary, or newer on disk and the user chose to overwrite it.
    return this.wholeWrite(path, k.oid, content);
  }

  private wholeWrite(path: string, base: string | null, content: Uint8Array): Change {
    const text = textOf(content);
    return text !== null
      ? { op: "write", path, base, content: text }
      : { op: "write", path, base, content_base64: base64(content) };
  }

  async createDirectory(uri: vscode.Uri): Promise<void> {
    const path = pathOf(uri);
    try {
      const outcome = await this.applier.apply([{ op: "mkdir", path }]);
      if ("conflicts" in outcome) throw vscode.FileSystemError.FileExists(uri);
      this.note(path, "dir", null, 0);
    } catch (e) {
      throw toFsError(e, uri);
    }
  }

  /** Files (and symlinks) at or below `path`, with their versions. */
  private async filesBelow(path: string, uri: vscode.Uri): Promise<{ kind: Kind; entries: TreeEntry[] }> {
    const k = this.known.get(path) ?? (await this.stat(uri), this.known.get(path));
    if (!k) throw vscode.FileSystemError.FileNotFound(uri);
    if (k.kind !== "dir") return { kind: k.kind, entries: [{ path, kind: k.kind, oid: k.oid ?? undefined, size: k.size, mode: "" }] };
    const q = new URLSearchParams({ path, recursive: "true", ignored: "true" });
    const { body } = await this.daemon.json<Tree>(`api/v1/tree?${q}`);
    return { kind: "dir", entries: body.entries.filter((e) => e.kind !== "dir" && e.oid) };
  }

  async delete(uri: vscode.Uri, options: { recursive: boolean }): Promise<void> {
    const path = pathOf(uri);
    try {
      const { kind, entries } = await this.filesBelow(path, uri);
      if (kind === "dir" && entries.length > 0 && !options.recursive) throw vscode.FileSystemError.NoPermissions(`${path} is not empty`);
      if (entries.length > 0) {
        const outcome = await this.applier.apply(entries.map((e) => ({ op: "delete", path: e.path, base: e.oid! })));
        if ("conflicts" in outcome) throw this.conflictError(outcome.conflicts.map((c) => c.path));
      }
      this.forget(path);
      if (kind === "dir") {
        // The contract has no op that removes a directory (a delete needs a file's version).
        throw vscode.FileSystemError.NoPermissions(
          `the files in ${path} were deleted; the workspace API cannot remove the folder itself, so it stays, empty`,
        );
      }
    } catch (e) {
      throw toFsError(e, uri);
    }
  }

  async rename(oldUri: vscode.Uri, newUri: vscode.Uri, options: { overwrite: boolean }): Promise<void> {
    const from = pathOf(oldUri);
    const to = pathOf(newUri);
    try {
      const { kind, entries } = await this.filesBelow(from, oldUri);
      let target: Known | undefined;
      try {
        await this.stat(newUri);
        target = this.known.get(to);
      } catch (e) {
        if (!(e instanceof vscode.FileSystemError) || e.code !== "FileNotFound") throw e;
      }
      if (target && !options.overwrite) throw vscode.FileSystemError.FileExists(newUri);
      if (target && (target.kind === "dir" || kind === "dir")) throw vscode.FileSystemError.FileExists(newUri);
      const changes: Change[] = entries.map((e) => {
        const dest = kind === "dir" ? `${to}${e.path.slice(from.length)}` : to;
        const c: Change = { op: "rename", path: e.path, to: dest, base: e.oid! };
        if (kind !== "dir" && target?.oid) c.to_base = target.oid;
        return c;
      });
      if (kind === "dir" && changes.length === 0) changes.push({ op: "mkdir", path: to });
      const outcome = await this.applier.apply(changes);
      if ("conflicts" in outcome) throw this.conflictError(outcome.conflicts.map((c) => c.path));
      const moved = this.known.get(from);
      this.forget(from);
      this.forget(to);
      if (moved && kind !== "dir") this.known.set(to, { ...moved, mtime: Math.max(Date.now(), moved.mtime + 1) });
      this.noteExists(to);
    } catch (e) {
      throw toFsError(e, oldUri);
    }
  }

  private conflictError(paths: string[]): Error {
    for (const p of paths) this.known.delete(p);
    this.emitter.fire(paths.map((p) => ({ type: vscode.FileChangeType.Changed, uri: this.uri(p) })));
    return vscode.FileSystemError.Unavailable(`${paths.join(", ")} changed on disk meanwhile; nothing was changed`);
  }

  /** A change on disk reported by the sync connection. */
  onSyncEvent(frame: SyncFrame): void {
    const mine = "origin" in frame && frame.origin !== undefined && frame.origin === this.applier.clientId();
    if (frame.type === "changed") {
      const before = this.known.get(frame.path);
      // Our own apply, recorded (or about to be) with the version it wrote: not news.
      if (mine && before?.oid === (frame.oid ?? null)) return;
      if (mine && frame.oid !== undefined && this.writing.get(frame.path)?.has(frame.oid)) return;
      const news = this.note(frame.path, frame.kind, frame.oid ?? null, frame.size);
      if (!news && before) return;
      this.emitter.fire([{ type: before ? vscode.FileChangeType.Changed : vscode.FileChangeType.Created, uri: this.uri(frame.path) }]);
    } else if (frame.type === "deleted") {
      const before = this.known.has(frame.path);
      this.forget(frame.path);
      if (mine && !before) return;
      this.emitter.fire([{ type: vscode.FileChangeType.Deleted, uri: this.uri(frame.path) }]);
    }
  }

  /** The event log could not be replayed: everything known may be stale. */
  onResync(openPaths: string[]): void {
    const events: vscode.FileChangeEvent[] = openPaths.map((p) => ({ type: vscode.FileChangeType.Changed, uri: this.uri(p) }));
    this.known.clear();
    this.missing.clear();
    events.push({ type: vscode.FileChangeType.Changed, uri: this.root });
    this.emitter.fire(events);
  }
}
