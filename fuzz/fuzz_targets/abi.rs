#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrovex_fuzz_checks::abi(data));
