//! Compiles `dsreg/v1/*.proto` with protox (no system `protoc`) and tonic-prost-build.
//!
//! The snapshot messages also derive serde so that the parse result, the wire message and the
//! API document are one type. Field attributes render the JSON conventions of DESIGN §3:
//! codes as `"0x%08x"`, enums as their lower-case names, absent fields skipped.

const SERDE_MESSAGES: &[&str] = &[
    "Snapshot",
    "DeviceState",
    "Validity",
    "DeviceDetails",
    "TenantDetails",
    "UserState",
    "SsoState",
    "PrtDiagnostics",
    "TestResult",
    "DiagnosticTests",
    "PreviousRegistration",
    "Diagnostics",
    "WorkAccount",
    "NgcPrerequisiteCheck",
    "ProxyConfig",
    "ExtraField",
    "ParseWarning",
    "Failure",
    "EventRecord",
    "ServerResponse",
    "JoinConfig",
    "Attempt",
];

/// Optional error-code fields, rendered as `"0x%08x"`.
const CODE_FIELDS: &[&str] = &[
    "UserState.wam_default_set_error",
    "PrtDiagnostics.attempt_status",
    "PrtDiagnostics.http_error",
    "TestResult.code",
    "TestResult.sub_code",
    "PreviousRegistration.client_error_code",
    "NgcPrerequisiteCheck.ngc_pre_req_error",
    "Failure.code",
    "Failure.sub_code",
    "EventRecord.exit_code",
    "JoinConfig.task_last_result",
    "Attempt.code",
    "Attempt.sub_code",
];

/// Enum fields and the adapter module that names their values.
const ENUM_FIELDS: &[(&str, &str)] = &[
    ("Snapshot.join_type", "join_type"),
    ("TestResult.result", "test_status"),
    ("Failure.phase", "phase"),
    ("Attempt.phase", "phase"),
];

/// Repeated fields left out of JSON when empty.
const VEC_FIELDS: &[&str] = &[
    "Snapshot.work_accounts",
    "Snapshot.extra",
    "Snapshot.warnings",
    "Failure.evidence",
    "Snapshot.attempts",
    "Attempt.sources",
];

fn main() -> anyhow::Result<()> {
    let protos = ["dsreg/v1/snapshot.proto", "dsreg/v1/telemetry.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["."])?;
    // The encoded descriptor set, for the collector's gRPC reflection service.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("dsreg_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    let mut builder = tonic_prost_build::configure();
    for m in SERDE_MESSAGES {
        builder = builder.type_attribute(
            format!(".dsreg.v1.{m}"),
            "#[serde_with::skip_serializing_none] \
             #[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        );
    }
    for f in CODE_FIELDS {
        builder = builder.field_attribute(
            format!(".dsreg.v1.{f}"),
            "#[serde(with = \"crate::json::opt_code\")]",
        );
    }
    for (f, module) in ENUM_FIELDS {
        builder = builder.field_attribute(
            format!(".dsreg.v1.{f}"),
            format!(
                "#[serde(with = \"crate::json::{module}\", skip_serializing_if = \"crate::json::is_zero\")]"
            ),
        );
    }
    for f in VEC_FIELDS {
        builder = builder.field_attribute(
            format!(".dsreg.v1.{f}"),
            "#[serde(skip_serializing_if = \"Vec::is_empty\")]",
        );
    }
    builder = builder.field_attribute(
        ".dsreg.v1.EventRecord.data",
        "#[serde(skip_serializing_if = \"std::collections::HashMap::is_empty\")]",
    );
    // A `Snapshot` is about 3.2 KB inline (its sub-messages are fields, not pointers), so an
    // unboxed `Report` is 3.4 KB and every move of one, from the decoder's push through the
    // collector's validation and queue, copied all of it. Boxed, a report moves as 240 bytes.
    builder = builder.boxed(".dsreg.v1.Report.snapshot");
    builder.compile_fds(fds)?;
    Ok(())
}
