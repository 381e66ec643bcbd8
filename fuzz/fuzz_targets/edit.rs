//! Fuzz target: `workspaced::fuzzing::edit` (see that module).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| workspaced::fuzzing::edit(data));
