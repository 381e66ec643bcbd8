//! Fuzz target: `workspaced::fuzzing::ws_control` (see that module).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| workspaced::fuzzing::ws_control(data));
