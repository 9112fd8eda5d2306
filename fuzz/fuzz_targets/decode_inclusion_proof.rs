#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| medchain_core::fuzzing::decode_inclusion_proof(data));
