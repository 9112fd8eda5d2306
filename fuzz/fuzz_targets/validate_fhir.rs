#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| medchain_fhir::fuzzing::validate_fhir(data));
