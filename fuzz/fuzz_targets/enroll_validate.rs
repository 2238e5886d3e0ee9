//! Wire bytes → `EnrollRequest` (prost) → `validate::enroll`: decoding refuses what it must,
//! validation never panics, and every rejection names the field.
#![no_main]

use dsreg_proto::v1::EnrollRequest;
use prost::Message;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(req) = EnrollRequest::decode(data) else {
        return;
    };
    if let Err(e) = dsreg_collector::validate::enroll(&req) {
        assert!(
            e.0.starts_with("machine_id") || e.0.starts_with("hostname"),
            "{}",
            e.0
        );
    }
});
