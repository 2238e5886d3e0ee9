//! `dsregcmd::parse` is total: any bytes give a snapshot, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dsreg_agent::dsregcmd::parse(data);
});
