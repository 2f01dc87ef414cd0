//! Fuzz target: `weir::fuzzing::scram`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::scram(data));
