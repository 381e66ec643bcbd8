//! Fuzz target: `workspaced::fuzzing::framing` (see that module).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| workspaced::fuzzing::framing(data));
