// The 30,000-file git checkout the Web IDE's benchmarks open
// (bench/webide.mjs, bench/webide_plain.mjs with CHECKOUT=1).
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

/** 30,000 files in 20 top directories of 15 subdirectories of 100 files, committed. */
export function checkout(dir) {
  for (let a = 0; a < 20; a++) {
    for (let b = 0; b < 15; b++) {
      const d = path.join(dir, `pkg${a}`, `mod${b}`);
      mkdirSync(d, { recursive: true });
      for (let c = 0; c < 100; c++) writeFileSync(path.join(d, `file${c}.rs`), `// pkg${a}/mod${b}/file${c}\npub fn f${c}() -> u32 { ${c} }\n`);
    }
  }
  writeFileSync(path.join(dir, "README.md"), "# a 30,000-file checkout\n");
  const git = (...args) => execFileSync("git", ["-c", "user.name=b", "-c", "user.email=b@example.com", ...args], { cwd: dir, stdio: "pipe" });
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("commit", "-q", "-m", "checkout");
}
