//! Fuzz target: `weir::fuzzing::backend`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::backend(data));
