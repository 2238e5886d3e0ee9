//! API tests through `tower::ServiceExt::oneshot`: errors, lookups, pagination, groups.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dsreg_proto::v1::{DeviceDetails, DeviceState, Diagnostics, PreviousRegistration, Report};
use dsreg_proto::{ExecutionContext, Snapshot};
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::api::test_app::{TestApp, test_app};

async fn app() -> TestApp {
    let mut reports = Vec::new();
    for i in 0..7u32 {
        reports.push(Report {
            report_id: format!("00000000-0000-4000-8000-{i:012}"),
            machine_id: format!("m-{i:02}"),
            hostname: format!("PC-{i:04}"),
            execution_context: ExecutionContext::System as i32,
            snapshot: Some(Box::new(Snapshot {
                device_state: Some(DeviceState {
                    azure_ad_joined: Some(false),
                    domain_joined: Some(true),
                    ..Default::default()
                }),
                device_details: (i == 3).then(|| DeviceDetails {
                    device_id: Some("AAAAAAAA-1111-2222-3333-444444444444".into()),
                    ..Default::default()
                }),
                diagnostics: Some(Diagnostics {
                    previous_registration: Some(PreviousRegistration {
                        time: Some("2025-03-09T11:00:27Z".into()),
                        client_error_code: Some(0x801c03f2),
                        error_phase: Some("join".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        });
    }
    test_app(reports, None).await
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value, String) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).to_string();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter_and_value() {
    let (app, store, _dir) = app().await;
    for (uri, needle) in [
        ("/api/v1/devices?join_type=joined", "join_type \"joined\""),
        ("/api/v1/devices?limit=ten", "limit \"ten\""),
        ("/api/v1/devices?limit=0", "limit \"0\""),
        ("/api/v1/devices?limit=5000", "limit \"5000\""),
        ("/api/v1/devices?cursor=zz", "cursor \"zz\""),
        ("/api/v1/devices?cursor=c1zz", "cursor \"c1zz\""),
        ("/api/v1/devices?phase=onboarding", "phase \"onboarding\""),
        ("/api/v1/devices?cause=bad_luck", "cause \"bad_luck\""),
        ("/api/v1/devices?code=0xzz", "code \"0xzz\""),
        ("/api/v1/devices?stale=maybe", "stale \"maybe\""),
        (
            "/api/v1/devices?jointype=hybrid_joined",
            "unknown parameter \"jointype\"",
        ),
    ] {
        let (status, body, text) = get(&app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {text}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{uri}: {msg}");
    }
    let (status, body, _) = get(&app, "/api/v1/devices/NOPE").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("NOPE"));
    let (status, body, text) = get(&app, "/api/v1/devices/%FF%FE").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(body["error"].is_string(), "{text}");
    // Invalid UTF-8 in a query value is decoded lossily: no match, not an error.
    let (status, _, text) = get(&app, "/api/v1/devices?hostname=%FF").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _, _) = get(&app, "/api/v2/whatever").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    store.close().await;
}

#[tokio::test]
async fn device_lookup_by_machine_id_hostname_or_entra_id() {
    let (app, store, _dir) = app().await;
    for key in [
        "m-03",
        "pc-0003",
        "PC-0003",
        "aaaaaaaa-1111-2222-3333-444444444444",
    ] {
        let (status, body, text) = get(&app, &format!("/api/v1/devices/{key}")).await;
        assert_eq!(status, StatusCode::OK, "{key}: {text}");
        assert_eq!(body["machine_id"], "m-03", "{key}");
        assert_eq!(body["stale"], false);
        assert!(body["snapshot"].is_object(), "{text}");
        assert!(body["transitions"].is_array(), "{text}");
    }
    let (status, body, _) = get(&app, "/api/v1/devices/m-03/history").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["history"][0]["kind"], "transition");
    store.close().await;
}

#[tokio::test]
async fn pagination_walks_every_device_once() {
    let (app, store, _dir) = app().await;
    let mut seen = Vec::new();
    let mut uri = "/api/v1/devices?limit=3".to_string();
    for _ in 0..10 {
        let (status, body, text) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        for d in body["devices"].as_array().unwrap() {
            seen.push(d["machine_id"].as_str().unwrap().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/devices?limit=3&cursor={c}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).map(|i| format!("m-{i:02}")).collect();
    assert_eq!(seen, expected);
    let (_, body, _) = get(&app, "/api/v1/devices?hostname=pc-000").await;
    assert_eq!(
        body["devices"].as_array().unwrap().len(),
        7,
        "prefix, case-insensitive"
    );
    let (_, body, _) = get(&app, "/api/v1/devices?hostname=PC-0004").await;
    assert_eq!(body["devices"].as_array().unwrap().len(), 1, "exact");
    let (_, body, _) = get(&app, "/api/v1/devices?stale=true").await;
    assert_eq!(body["devices"].as_array().unwrap().len(), 0);
    store.close().await;
}

#[tokio::test]
async fn health_catalog_failures_and_metrics_answer() {
    let (app, store, _dir) = app().await;
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
    let (status, body, _) = get(&app, "/api/v1/catalog").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body["entries"].as_array().unwrap().is_empty());
    assert!(!body["causes"].as_array().unwrap().is_empty());
    let (status, body, text) = get(&app, "/api/v1/failures").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let groups = body["groups"].as_array().unwrap();
    let total: u64 = groups.iter().map(|g| g["devices"].as_u64().unwrap()).sum();
    // How many fail depends on the shared diagnosis rules; every group is well formed.
    assert!(total <= 7);
    for g in groups {
        assert!(g["sample_devices"].as_array().unwrap().len() <= 5);
        assert!(
            g.get("cause_text").is_some() && g.get("resolution").is_some(),
            "{g}"
        );
    }
    let (status, _, text) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("dsreg_devices{join_type="), "{text}");
    assert!(text.contains("dsreg_devices_stale 0"), "{text}");
    store.close().await;
    assert_eq!(
        get(&app, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
