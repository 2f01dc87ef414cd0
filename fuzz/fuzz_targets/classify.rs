//! Fuzz target: `weir::fuzzing::classify`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::classify(data));
