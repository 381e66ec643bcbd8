//! Helpers shared by the CLI integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod git_http;

/// The real `workspace-injector` binary built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_workspace-injector"))
}

/// `shared/devfiles` beside the project root.
pub fn devfiles_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/devfiles"
    ))
}

/// `shared/devfiles/schema` beside the project root.
pub fn schema_dir() -> PathBuf {
    devfiles_dir().join("schema")
}

/// Runs the binary with arguments and returns its output.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run workspace-injector")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `text` to `name` in `dir` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Builds the daemon into the target dir this test binary was built in,
/// and returns its path. `--workspace --bins` rather than `-p workspaced`:
/// it selects the same packages, hence the same dependency features, as the
/// CI's `cargo build --workspace --bins`, so nothing is rebuilt there.
pub fn build_workspaced() -> PathBuf {
    let injector = PathBuf::from(env!("CARGO_BIN_EXE_workspace-injector"));
    let profile_dir = injector.parent().unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .args(["build", "--workspace", "--bins"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cargo build --workspace --bins: {}",
        stderr(&o)
    );
    profile_dir.join("workspaced")
}
