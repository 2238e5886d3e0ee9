//! UI tests through `tower::ServiceExt::oneshot`: the three pages render, device-sent strings
//! are escaped, bad filters are 400 pages, and the reader-token login works with the cookie.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use dsreg_proto::v1::{
    Attempt, DeviceState, Diagnostics, ExtraField, PreviousRegistration, Report, Snapshot,
};
use tower::ServiceExt;

use crate::api::test_app::{TestApp, test_app};
use crate::auth::{Auth, TokenFile};

const HOSTILE: &str = "<script>alert(\"x\")</script>'\"><img src=x onerror=alert(1)>";
const TOKEN: &str = "reader-token-0123456789abcdef";

fn report(i: u32, hostname: &str, message: &str) -> Report {
    Report {
        report_id: format!("00000000-0000-4000-8000-{i:012}"),
        machine_id: format!("m-{i:02}"),
        hostname: hostname.to_string(),
        snapshot: Some(Box::new(Snapshot {
            device_state: Some(DeviceState {
                azure_ad_joined: Some(false),
                domain_joined: Some(true),
                ..Default::default()
            }),
            diagnostics: Some(Diagnostics {
                previous_registration: Some(PreviousRegistration {
                    time: Some("2025-03-09T11:00:27Z".into()),
                    client_error_code: Some(0x801c03f2),
                    error_phase: Some("join".into()),
                    server_error_code: Some("DirectoryError".into()),
                    server_message: Some(message.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            extra: vec![ExtraField {
                section: "Diagnostic Data".into(),
                key: "Odd Line".into(),
                value: message.to_string(),
            }],
            attempts: vec![Attempt {
                time: Some("2025-03-09T11:00:27Z".into()),
                code: Some(0x801c03f2),
                cause: "directory_error".into(),
                server_message: Some(message.to_string()),
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    }
}

async fn app(tokens: Option<&std::path::Path>) -> TestApp {
    let mut reports = vec![report(0, HOSTILE, HOSTILE)];
    for i in 1..4 {
        reports.push(report(
            i,
            &format!("PC-{i:04}"),
            "The device object by the given id (x) is not found.",
        ));
    }
    let mut auth = Auth::default();
    if let Some(p) = tokens {
        auth.reader = Some(Arc::new(TokenFile::load("reader_token_file", p).unwrap()));
    }
    test_app(reports, Some(auth)).await
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&bytes).to_string())
}

async fn get(app: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// No tag the device sent survives as markup: every `<` of it is `&lt;`.
fn assert_escaped(html: &str) {
    assert!(!html.contains("<script>alert"), "raw script tag in page");
    assert!(!html.contains("<img src=x"), "raw img tag in page");
    assert!(html.contains("&lt;script&gt;alert"), "escaped text missing");
}

#[tokio::test]
async fn the_three_pages_render_and_escape_what_devices_sent() {
    let (app, store, _dir) = app(None).await;
    let (status, headers, html) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(html.contains("Failures by phase and cause"), "{html}");
    assert!(html.contains("/ui/devices?phase=join&amp;cause="), "{html}");
    // Every failing device arrived just now: each group grew since the day before.
    assert!(
        html.contains("New in 24 h") && html.contains(" ↑") && html.contains("0 the day before"),
        "{html}"
    );
    assert_escaped(&html);

    let (status, _, html) = get(&app, "/ui/devices?hostname=pc-").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("PC-0001") && html.contains("PC-0003"),
        "{html}"
    );
    assert!(
        !html.contains("&lt;script"),
        "the prefix filter kept the hostile name out"
    );
    let (status, _, html) = get(&app, "/ui/devices?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("cursor=c1"), "a next-page link: {html}");
    assert_escaped(&html);

    let (status, _, html) = get(&app, "/ui/devices/m-00").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_escaped(&html);
    for needle in [
        "What is wrong",
        "Join attempts",
        "History",
        "Agent",
        "Snapshot",
        "Odd Line",
    ] {
        assert!(html.contains(needle), "{needle}: {html}");
    }
    let (status, _, html) = get(&app, "/ui/devices/PC-0002").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("What to do:"), "{html}");
    store.close().await;
}

#[tokio::test]
async fn bad_filters_and_unknown_devices_are_html_errors() {
    let (app, store, _dir) = app(None).await;
    let (status, headers, html) = get(&app, "/ui/devices?cause=%3Cb%3Ebad").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        html.contains("invalid cause") && html.contains("&lt;b&gt;bad"),
        "{html}"
    );
    let (status, _, html) = get(&app, "/ui/devices/%3Cscript%3Enope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!html.contains("<script>n"), "{html}");
    store.close().await;
}

#[tokio::test]
async fn reader_token_login_sets_a_strict_http_only_cookie() {
    let tokens = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tokens.path(), format!("{TOKEN}\n")).unwrap();
    let (app, store, _dir) = app(Some(tokens.path())).await;

    // A page without a token goes to the login page and comes back afterwards.
    let (status, headers, _) = get(&app, "/ui/devices?cause=directory_error").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = headers[header::LOCATION].to_str().unwrap();
    assert_eq!(
        to,
        "/ui/login?next=%2Fui%2Fdevices%3Fcause%3Ddirectory_error"
    );
    let (status, _, html) = get(&app, to).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("type=\"password\""), "{html}");
    // The API still answers 401 JSON.
    let (status, _, body) = get(&app, "/api/v1/failures").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let login = |token: &str, next: &str| {
        Request::post("/ui/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}&next={next}")))
            .unwrap()
    };
    let (status, headers, _) = send(&app, login("wrong-token-0123456789", "%2F")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get(header::SET_COOKIE).is_none());
    // An outside `next` is not followed.
    let (status, headers, _) = send(&app, login(TOKEN, "https%3A%2F%2Fevil.example%2F")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();

    let with_cookie = |uri: &str| {
        Request::get(uri)
            .header(header::COOKIE, pair.as_str())
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, html) = send(&app, with_cookie("/")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (status, _, _) = send(&app, with_cookie("/ui/devices/m-01")).await;
    assert_eq!(status, StatusCode::OK);
    let bearer = Request::get("/api/v1/failures")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, bearer).await.0, StatusCode::OK);
    let forged = Request::get("/")
        .header(header::COOKIE, "dsreg_reader=not-the-token-0123456789")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, forged).await.0, StatusCode::SEE_OTHER);
    store.close().await;
}
