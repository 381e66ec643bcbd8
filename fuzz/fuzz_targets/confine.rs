//! Fuzz target: `workspaced::fuzzing::confine` on a workspace made once.
#![no_main]

use std::sync::OnceLock;

use workspaced::confine::Root;

fn root() -> &'static Root {
    static ROOT: OnceLock<Root> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("workspaced-fuzz-confine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("make the fuzz workspace");
        workspaced::fuzzing::confine_tree(&dir).expect("make the fuzz workspace");
        let ws = dir.join("ws").canonicalize().expect("the fuzz workspace exists");
        Root::open(&ws).expect("open the fuzz workspace")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| workspaced::fuzzing::confine(root(), data));
