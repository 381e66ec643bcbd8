//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the
//! crash inputs kept as regressions (`fuzz/regressions/<target>/`) through
//! the fuzz targets' own entry points, on stable, so CI reruns every input
//! the fuzzer found interesting without nightly.

use std::path::{Path, PathBuf};

use workspaced::confine::Root;
use workspaced::fuzzing;

/// Every input of a target: its corpus and its regressions.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out.sort();
    assert!(
        !out.is_empty(),
        "the corpus of {target} is empty; it is committed under fuzz/corpus/{target}/"
    );
    out
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    for (path, bytes) in inputs(target) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&bytes)));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn patch() {
    replay("patch", fuzzing::patch);
}

#[test]
fn edit() {
    replay("edit", fuzzing::edit);
}

#[test]
fn confine() {
    let dir = tempfile::tempdir().unwrap();
    fuzzing::confine_tree(dir.path()).unwrap();
    let root = Root::open(&dir.path().join("ws").canonicalize().unwrap()).unwrap();
    replay("confine", |data| fuzzing::confine(&root, data));
}

#[test]
fn framing() {
    replay("framing", fuzzing::framing);
}

#[test]
fn lane() {
    replay("lane", fuzzing::lane);
}

#[test]
fn index() {
    let dir = tempfile::tempdir().unwrap();
    replay("index", |data| fuzzing::index(dir.path(), data));
}

#[test]
fn ws_control() {
    replay("ws_control", fuzzing::ws_control);
}
