//! Fuzz target: `workspaced::fuzzing::patch` (see that module).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| workspaced::fuzzing::patch(data));
