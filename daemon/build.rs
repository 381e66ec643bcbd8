//! Fetches the web console's front-end dependencies from npm (they are not
//! committed) so that rust-embed can embed them. Without npm the daemon still
//! builds; the console then says its terminal assets are missing.

use std::path::Path;
use std::process::Command;

fn main() {
    let console = Path::new(env!("CARGO_MANIFEST_DIR")).join("../editor-assets/console");
    println!(
        "cargo:rerun-if-changed={}",
        console.join("package.json").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        console.join("package-lock.json").display()
    );
    let marker = console.join("node_modules/@xterm/xterm/lib/xterm.js");
    if marker.exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(&console)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => println!("cargo:warning=npm ci for the web console failed ({s}); the console will lack its terminal"),
        Err(e) => println!("cargo:warning=npm is not available ({e}); the web console will lack its terminal"),
    }
}
