//! `events::parse_events` is total: `Ok` or `Err` on any bytes, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dsreg_agent::events::parse_events(data);
});
