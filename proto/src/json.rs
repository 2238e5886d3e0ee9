//! Serde adapters for the snapshot's JSON form (DESIGN §3).
//!
//! Wired onto the generated types by `build.rs`: codes render as lower-case `"0x%08x"`,
//! enums as their labels (see [`crate::labels`]), and unspecified enums are skipped.
//! Deserialisation accepts what serialisation writes, so the JSON form round-trips.

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

/// True for an enum field left at its unspecified (0) value.
pub fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// `Option<u32>` ↔ `"0x%08x"`. Deserialising also accepts decimal numbers.
pub mod opt_code {
    use super::*;

    /// Serialises a code as `"0x%08x"`.
    pub fn serialize<S: Serializer>(v: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(c) => s.serialize_str(&crate::hex(*c)),
            None => s.serialize_none(),
        }
    }

    /// Reads `"0x…"`, a decimal string or a JSON number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(i64),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::N(n)) => u32::try_from(n)
                .or_else(|_| i32::try_from(n).map(|v| v as u32))
                .map(Some)
                .map_err(|_| D::Error::custom(format!("code {n} does not fit 32 bits"))),
            Some(Raw::S(s)) => crate::catalog::parse_code(&s)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("bad error code {s:?}"))),
        }
    }
}

macro_rules! enum_adapter {
    ($module:ident, $ty:ty, $doc:literal) => {
        #[doc = $doc]
        pub mod $module {
            use super::*;

            /// Serialises the enum as its label.
            pub fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
                let e = <$ty>::try_from(*v).unwrap_or_default();
                s.serialize_str(e.label())
            }

            /// Reads a label; an empty string is the unspecified value.
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
                let s = String::deserialize(d)?;
                if s.is_empty() {
                    return Ok(0);
                }
                <$ty>::from_label(&s)
                    .map(|e| e as i32)
                    .ok_or_else(|| D::Error::custom(format!("unknown value {s:?}")))
            }
        }
    };
}

enum_adapter!(
    join_type,
    crate::JoinType,
    "`JoinType` ↔ `hybrid_joined`, …"
);
enum_adapter!(phase, crate::Phase, "`Phase` ↔ `pre-check`, …");
enum_adapter!(
    test_status,
    crate::TestStatus,
    "`TestStatus` ↔ `PASS` / `FAIL` / `SKIPPED`."
);

#[cfg(test)]
mod tests {
    use crate::v1::{DiagnosticTests, Diagnostics, Snapshot, TestResult};
    use crate::{JoinType, TestStatus};

    #[test]
    fn snapshot_json_uses_design_paths_and_skips_absent_fields() {
        let snap = Snapshot {
            join_type: JoinType::DomainJoined as i32,
            diagnostics: Some(Diagnostics {
                tests: Some(DiagnosticTests {
                    drs_discovery: Some(TestResult {
                        result: TestStatus::Fail as i32,
                        code: Some(0x801c0021),
                        sub_code: Some(0x80072ee2),
                    }),
                    ..Default::default()
                }),
                fallback_to_sync_join: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(&snap).unwrap();
        assert_eq!(v["join_type"], "domain_joined");
        let t = &v["diagnostics"]["tests"]["drs_discovery"];
        assert_eq!(t["result"], "FAIL");
        assert_eq!(t["code"], "0x801c0021");
        assert_eq!(t["sub_code"], "0x80072ee2");
        assert_eq!(v["diagnostics"]["fallback_to_sync_join"], true);
        assert!(
            v.get("device_state").is_none(),
            "absent section must not appear: {v}"
        );
        assert!(v.get("extra").is_none());
        assert!(v.get("failure").is_none());
        assert!(v["diagnostics"].get("user_context").is_none());

        let back: Snapshot = serde_json::from_value(v).unwrap();
        assert_eq!(back, snap);
    }
}
