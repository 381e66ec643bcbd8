//! Fuzz target: `workspace_injector::fuzzing::devfile` (see that module).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| workspace_injector::fuzzing::devfile(data));
