//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the
//! crash inputs kept as regressions (`fuzz/regressions/<target>/`) through
//! the fuzz targets' own entry points, on stable, so CI reruns every input
//! the fuzzer found interesting without nightly.

use std::path::{Path, PathBuf};

use workspace_injector::fuzzing;

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
fn yaml() {
    replay("yaml", fuzzing::yaml);
}

#[test]
fn devfile() {
    replay("devfile", fuzzing::devfile);
}
