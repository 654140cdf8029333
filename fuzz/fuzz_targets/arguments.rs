#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_gateway_fuzz::arguments::run(data));
