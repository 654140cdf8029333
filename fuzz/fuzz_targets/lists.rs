#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_gateway_fuzz::lists::run(data));
