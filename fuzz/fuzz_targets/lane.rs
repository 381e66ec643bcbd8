//! Fuzz target: `workspaced::fuzzing::lane` (see that module).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| workspaced::fuzzing::lane(data));
