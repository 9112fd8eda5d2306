#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| medchain_core::fuzzing::decode_sealed_writer_key(data));
