//! The join configuration parsers are total: `reg query` and schtasks (XML or list) output
//! of any bytes give a result and warnings, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let tasks = [data.to_vec()];
    let _ = dsreg_agent::joinconfig::from_captures(Some(data), &tasks, time::UtcOffset::UTC);
});
