//! A small client of the workspace daemon's API (shared/spec/PROTOCOL.md):
//! the daemon's base URL and a credential (the owner token or a JWT), sent as
//! `Authorization: Bearer` on requests and as `access_token` on WebSocket
//! upgrades, the only other place the contract accepts it from a page.

/** Every failure of a call to the daemon: the contract's error code (or
 * `unreachable` / `bad_answer` for failures of the network or the answer),
 * the HTTP status (0 without an answer), and the error body when there is one. */
export class DaemonError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly body?: unknown,
  ) {
    super(message);
    this.name = "DaemonError";
  }

  /** The credential is missing, wrong or expired (401), or lacks the role (403). */
  get isCredential(): boolean {
    return this.status === 401 || (this.status === 403 && this.code !== "origin_not_allowed");
  }
}

/** How long a request may take before it is given up (a daemon that stopped answering). */
const REQUEST_TIMEOUT_MS = 60_000;

export interface RequestOptions {
  method?: string;
  body?: BodyInit;
  json?: unknown;
  headers?: Record<string, string>;
  /** Statuses that are answers, not errors (e.g. 409 for an apply's conflicts). */
  accept?: number[];
}

export class Daemon {
  readonly base: URL;

  constructor(base: string, private readonly credential: string) {
    const url = new URL(base);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new DaemonError("bad_config", `the daemon URL must be http or https, not ${url.protocol}`, 0);
    }
    if (!url.pathname.endsWith("/")) url.pathname += "/";
    this.base = url;
  }

  /** When the credential stops being valid (a JWT's `exp`, in ms), or null
   * (the owner token, or a JWT without a readable `exp`). Read, not
   * verified: the daemon verifies; this only says when to stop using a
   * WebSocket that was opened with it, which the daemon does not end. */
  credentialExpiry(): number | null {
    const parts = this.credential.split(".");
    if (parts.length !== 3) return null;
    try {
      const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
      const exp = (JSON.parse(json) as { exp?: unknown }).exp;
      return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null;
    } catch {
      return null;
    }
  }

  /** `rel` is relative to the daemon's base, without a leading `/` (`api/v1/tree?path=`). */
  url(rel: string): URL {
    return new URL(rel, this.base);
  }

  /** A WebSocket URL for `rel` with the credential as `access_token`. */
  wsUrl(rel: string, params: Record<string, string> = {}): string {
    const url = this.url(rel);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    url.searchParams.set("access_token", this.credential);
    return url.toString();
  }

  /** One request; a status outside 2xx (and `accept`) becomes a `DaemonError`. */
  async request(rel: string, opts: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.credential}`, ...opts.headers };
    let body = opts.body;
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.json);
    }
    let resp: Response;
    try {
      resp = await fetch(this.url(rel), {
        method: opts.method ?? "GET",
        headers,
        body,
        credentials: "omit",
        cache: "no-store",
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (e) {
      throw new DaemonError("unreachable", `the workspace at ${this.base.origin} cannot be reached: ${String(e)}`, 0);
    }
    if (resp.ok || opts.accept?.includes(resp.status)) return resp;
    throw await errorOf(resp);
  }

  /** A request whose answer is JSON. */
  async json<T>(rel: string, opts: RequestOptions = {}): Promise<{ status: number; body: T }> {
    const resp = await this.request(rel, opts);
    try {
      return { status: resp.status, body: (await resp.json()) as T };
    } catch (e) {
      throw new DaemonError("bad_answer", `the workspace answered ${rel} with something that is not JSON`, resp.status);
    }
  }
}

/** The contract's error body `{"error":{"code","message"}}` as a `DaemonError`. */
export async function errorOf(resp: Response): Promise<DaemonError> {
  let body: unknown;
  try {
    body = await resp.json();
  } catch {
    body = undefined;
  }
  const err = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const code = typeof err?.code === "string" ? err.code : `http_${resp.status}`;
  let message = typeof err?.message === "string" ? err.message : `the workspace answered ${resp.status}`;
  if (resp.status === 401) message = `the workspace refused the credential: ${message}`;
  if (resp.status === 403 && code !== "origin_not_allowed") message = `the credential may not use this workspace: ${message}`;
  return new DaemonError(code, message, resp.status, body);
}

/** Percent-encodes each component of a workspace path for a URL path. */
export function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}
