// Bundles the extension into one file for VS Code's web extension host (a
// web worker): CommonJS, browser platform, `vscode` left to the host.
import { build } from "esbuild";

await build({
  entryPoints: ["src/extension.ts"],
  bundle: true,
  outfile: "dist/extension.js",
  format: "cjs",
  platform: "browser",
  target: "es2022",
  external: ["vscode"],
  sourcemap: true,
  logLevel: "warning",
});
