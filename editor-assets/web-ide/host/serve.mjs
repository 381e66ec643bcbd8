// A static server for the Web IDE: the host page at `/`, the VS Code build
// at `/vscode/<build>/` (<build> the name of its cache directory, which
// scripts/webide-dist.sh changes whenever what it caches changes), the
// extension at `/extension/<tag>/` (its package.json and dist/ only; <tag>
// follows its build, so a rebuild gets a new path) and, unversioned, at
// `/extension/`. The tests and bench/webide.sh use it; by hand:
//   node host/serve.mjs [--port N] [--vscode DIR]   (prints the page's URL)
//
// Caching: the build's and the extension's versioned URLs change with
// their content, so the browser keeps their files (and their 404s) for a
// year without asking again (`immutable`): VS Code reads the extension's
// manifest four times per load, each a round trip when revalidated. The
// page (which names both paths) and the unversioned extension are asked
// for every time, answered 304 when unchanged. A build file with a `.br`
// or `.gz` copy beside it (webide-trim.mjs makes them) is sent compressed
// to a browser that accepts it.
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, statSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, "..");

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8", ".json": "application/json", ".map": "application/json", ".svg": "image/svg+xml",
  ".png": "image/png", ".ico": "image/x-icon", ".ttf": "font/ttf", ".woff": "font/woff", ".woff2": "font/woff2",
  ".wasm": "application/wasm", ".txt": "text/plain; charset=utf-8",
};

const IMMUTABLE = "public, max-age=31536000, immutable";

/** The extension's version: its manifest's and bundle's sizes and times
 * (a rebuild changes them), hashed; "none" while it is not built. */
function extensionTag(...files) {
  const h = createHash("sha256");
  for (const f of files) {
    try {
      const st = statSync(f);
      h.update(`${st.size}:${st.mtimeMs}\n`);
    } catch {
      return "none";
    }
  }
  return h.digest("base64url").slice(0, 12);
}

/** Starts the server on 127.0.0.1:`port` (0: any); resolves to { url, close }. */
export function startHost({ port = 0, vscode }) {
  if (!vscode) throw new Error("startHost: the VS Code build's directory is required (scripts/webide-dist.sh prints it)");
  const build = `/vscode/${encodeURIComponent(path.basename(path.resolve(vscode)))}/`;
  const manifest = path.join(pkg, "package.json");
  const bundle = path.join(pkg, "dist");
  const template = readFileSync(path.join(here, "index.html"), "utf8").replace('content="./vscode/"', `content=".${build}"`);
  // The page names the build's and the extension's paths; it is made again
  // when the extension is rebuilt (a new tag), else served as it was.
  let page = null;
  const pageFor = (tag) => {
    if (page?.tag !== tag) {
      const body = Buffer.from(template.replace('content="./extension/"', `content="./extension/${tag}/"`));
      page = { tag, body, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 16)}"` };
    }
    return page;
  };
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405).end();
      return;
    }
    let rel;
    try {
      rel = decodeURIComponent(new URL(req.url, "http://x").pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (rel === "/") rel = "/index.html";
    // The extension's tag (two stats) only for the requests that need it:
    // the page, which names it, and the extension's own files.
    const tag = rel === "/index.html" || rel.startsWith("/extension/") ? extensionTag(manifest, path.join(bundle, "extension.js")) : null;
    const versioned = tag && `/extension/${tag}/`;
    const mounts = [
      [build, path.resolve(vscode)],
      ...(versioned ? [[`${versioned}package.json`, manifest], [`${versioned}dist/`, bundle]] : []),
      ["/extension/package.json", manifest],
      ["/extension/dist/", bundle],
      ["/", here],
    ];
    const immutable = rel.startsWith(build) || (versioned !== null && rel.startsWith(versioned));
    for (const [prefix, dir] of mounts) {
      if (!(rel === prefix || rel.startsWith(prefix))) continue;
      const file = prefix.endsWith("/") ? path.resolve(dir, `.${rel.slice(prefix.length - 1)}`) : dir;
      // Nothing outside the mount, whatever the request says.
      if (file !== dir && !file.startsWith(dir + path.sep)) break;
      let st;
      try {
        st = statSync(file);
      } catch {
        break;
      }
      if (!st.isFile() || (dir === here && file.endsWith(".mjs"))) break;
      const headers = { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" };
      const isIndex = file === path.join(here, "index.html");
      const index = isIndex ? pageFor(tag) : null;
      if (immutable) {
        headers["Cache-Control"] = IMMUTABLE;
      } else {
        headers["Cache-Control"] = "no-cache";
        headers.ETag = index ? index.etag : `"${st.size}-${Math.floor(st.mtimeMs)}"`;
        if (req.headers["if-none-match"] === headers.ETag) {
          res.writeHead(304, headers).end();
          return;
        }
      }
      if (index) {
        res.writeHead(200, { ...headers, "Content-Length": index.body.length });
        res.end(req.method === "HEAD" ? undefined : index.body);
        return;
      }
      let send = file;
      if (prefix === build) {
        headers.Vary = "Accept-Encoding";
        const accepted = String(req.headers["accept-encoding"] ?? "");
        for (const [enc, ext] of [["br", ".br"], ["gzip", ".gz"]]) {
          if (!new RegExp(`\\b${enc}\\b`).test(accepted)) continue;
          try {
            st = statSync(file + ext);
          } catch {
            continue;
          }
          send = file + ext;
          headers["Content-Encoding"] = enc;
          break;
        }
      }
      res.writeHead(200, { ...headers, "Content-Length": st.size });
      if (req.method === "HEAD") res.end();
      else createReadStream(send).pipe(res);
      return;
    }
    // What a versioned path lacks it lacks for good (VS Code asks for the
    // extension's package.nls.json at every load).
    res.writeHead(404, { "Content-Type": "text/plain", ...(immutable ? { "Cache-Control": IMMUTABLE } : {}) }).end("not found\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const { port: p } = server.address();
      resolve({ url: `http://127.0.0.1:${p}/`, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
  const { url } = await startHost({ port: Number(opt("--port") ?? 0), vscode: opt("--vscode") ?? process.env.WEBIDE_VSCODE });
  console.log(url);
}
