//! The daemon's JSON shapes that the extension reads and sends (PROTOCOL.md,
//! "Files and sync"), in one place.

export type Kind = "file" | "dir" | "symlink";

export interface TreeEntry {
  path: string;
  kind: Kind;
  oid?: string;
  size: number;
  mode: string;
}

export interface Tree {
  entries: TreeEntry[];
  head: string | null;
}

export type Change =
  | { op: "write"; path: string; base: string | null; content?: string; content_base64?: string }
  | { op: "patch"; path: string; base: string; diff: string }
  | { op: "delete"; path: string; base: string }
  | { op: "rename"; path: string; to: string; base: string; to_base?: string }
  | { op: "mkdir"; path: string };

export interface ApplyResult {
  path: string;
  oid: string | null;
}

export interface Conflict {
  path: string;
  code: "version_conflict" | "not_found" | "patch_does_not_apply" | "target_exists" | string;
  expected: string | null;
  actual: string | null;
}

/** What an apply came to: its results, or (nothing applied) its conflicts. */
export type ApplyOutcome = { results: ApplyResult[] } | { conflicts: Conflict[] };

/** Server frames of `/api/v1/sync`. */
export type SyncFrame =
  | { type: "hello"; client: string; epoch: string; seq: number }
  | { type: "changed"; seq: number; path: string; kind: Kind; oid?: string; size: number; mode: string; origin?: string }
  | { type: "deleted"; seq: number; path: string; kind: Kind; origin?: string }
  | { type: "git"; seq: number; head: string | null; branch: string | null }
  | { type: "resync" }
  | { type: "applied"; id: unknown; results: ApplyResult[] }
  | { type: "conflict"; id: unknown; conflicts: Conflict[] }
  | { type: "error"; id: unknown; error: { code: string; message: string } }
  | { type: "shutdown" };
