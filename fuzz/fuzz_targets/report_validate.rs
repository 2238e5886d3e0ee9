//! Wire bytes → `ReportBatch` (prost) → `validate::batch`: decoding refuses what it must
//! (invalid UTF-8, bad wire types), validation never panics, and every rejection names a
//! report field.
#![no_main]

use dsreg_proto::v1::ReportBatch;
use prost::Message;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(batch) = ReportBatch::decode(data) else {
        return;
    };
    match dsreg_collector::validate::batch(&batch, 1000) {
        Err(e) => assert!(e.0.starts_with("reports: ")),
        Ok(verdicts) => {
            for (i, v) in verdicts.iter().enumerate() {
                if let Err(e) = v {
                    assert!(e.0.starts_with(&format!("reports[{i}].")), "{}", e.0);
                }
            }
        }
    }
});
