//! Fuzz target: `workspaced::fuzzing::index`, the index file in a directory made once.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("workspaced-fuzz-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("make the fuzz git dir");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| workspaced::fuzzing::index(dir(), data));
