#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| medchain_node::fuzzing::decode_frames(data));
