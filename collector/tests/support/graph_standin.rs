//! A stand-in for the Entra token endpoint and Microsoft Graph `devices/delta`, on
//! 127.0.0.1:0, serving the documented shapes: `{"value": [...], "@odata.nextLink"}` pages,
//! a final `@odata.deltaLink`, `@removed: {"reason": …}` entries, 429 with `Retry-After`,
//! 401 for a revoked token, 410 `resyncRequired` for an expired delta token, and the token
//! endpoint's 400 `invalid_client` / `AADSTS7000215` for a wrong secret.
//!
//! Delta tokens are the stand-in's change version: a delta round returns the latest change
//! of each object changed after that version; a full round lists the current objects.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// What the stand-in holds and counts.
#[derive(Default)]
pub struct Standin {
    /// Current objects by id.
    pub objects: BTreeMap<String, Value>,
    /// (version, change) in order.
    pub changes: Vec<(u64, Value)>,
    /// Current version.
    pub version: u64,
    /// Objects per page.
    pub page_size: usize,
    /// The secret the token endpoint accepts.
    pub secret: String,
    /// Tokens issued and still valid.
    pub tokens: HashSet<String>,
    /// Token requests answered.
    pub token_requests: u32,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// Answer the next N Graph calls 429 with `Retry-After: 1`.
    pub throttle_next: u32,
    /// Delta tokens issued before this version are expired (410).
    pub expired_before: u64,
    /// Graph calls: (full round?, had a delta token?).
    pub calls: Vec<String>,
    /// Client assertions presented (certificate credentials), accepted as they come: the
    /// test verifies them.
    pub assertions: Vec<String>,
}

/// Shared handle.
pub type Shared = Arc<Mutex<Standin>>;

impl Standin {
    /// Creates or replaces an object (a full object, or the changed properties with `id`).
    pub fn upsert(&mut self, obj: Value) {
        let id = obj["id"].as_str().expect("id").to_string();
        self.version += 1;
        let merged = match self.objects.get(&id) {
            Some(Value::Object(old)) => {
                let mut m = old.clone();
                if let Value::Object(new) = &obj {
                    m.extend(new.clone());
                }
                Value::Object(m)
            }
            _ => obj.clone(),
        };
        self.objects.insert(id, merged);
        self.changes.push((self.version, obj));
    }

    /// Deletes an object; delta rounds see `@removed` with `reason`.
    pub fn remove(&mut self, id: &str, reason: &str) {
        self.version += 1;
        self.objects.remove(id);
        self.changes.push((
            self.version,
            json!({"id": id, "@removed": {"reason": reason}}),
        ));
    }

    /// Revokes every issued token (the next Graph call gets 401).
    pub fn revoke_tokens(&mut self) {
        self.tokens.clear();
    }
}

/// A device object as Graph returns it with the collector's `$select`.
pub fn device(
    id: &str,
    device_id: &str,
    name: &str,
    trust: &str,
    keys: usize,
    enabled: bool,
    sid: Option<&str>,
) -> Value {
    let alt: Vec<Value> = (0..keys)
        .map(|i| json!({"type": 2, "identityProvider": null, "key": format!("a2V5LXtpfQ{i}==")}))
        .collect();
    json!({
        "id": id,
        "deviceId": device_id,
        "displayName": name,
        "trustType": trust,
        "accountEnabled": enabled,
        "alternativeSecurityIds": alt,
        "registrationDateTime": if keys > 0 { json!("2026-01-05T10:00:00Z") } else { Value::Null },
        "approximateLastSignInDateTime": "2026-11-29T08:00:00Z",
        "operatingSystem": "Windows",
        "operatingSystemVersion": "10.0.22631.4460",
        "onPremisesSyncEnabled": trust == "ServerAd",
        "onPremisesLastSyncDateTime": "2026-11-30T06:00:00Z",
        "onPremisesSecurityIdentifier": sid,
        "isManaged": true,
        "isCompliant": keys > 0,
    })
}

/// Starts the stand-in; returns its base URL (`http://127.0.0.1:PORT`) and state.
pub async fn start(secret: &str, page_size: usize) -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(Standin {
        page_size,
        secret: secret.to_string(),
        ..Standin::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/v1.0/devices/delta", get(delta))
        .with_state((state.clone(), base.clone()));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, state)
}

fn form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(h, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn token(State((s, _)): State<(Shared, String)>, body: String) -> Response {
    let f = form(&body);
    let mut st = s.lock().unwrap();
    st.token_requests += 1;
    st.scopes.push(f.get("scope").cloned().unwrap_or_default());
    if f.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    if let Some(a) = f.get("client_assertion") {
        assert_eq!(
            f.get("client_assertion_type").map(String::as_str),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        st.assertions.push(a.clone());
        let t = format!("tok-{}", st.token_requests);
        st.tokens.insert(t.clone());
        return axum::Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": t}))
            .into_response();
    }
    let presented = f.get("client_secret").cloned().unwrap_or_default();
    if presented != st.secret {
        // Entra's shape; this stand-in also echoes the secret, which must never reach a log.
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "error": "invalid_client",
                "error_description": format!("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID ({presented}).\r\nTrace ID: 0000\r\nCorrelation ID: 1111\r\nTimestamp: 2026-11-30 12:00:00Z"),
                "error_codes": [7000215],
            })),
        )
            .into_response();
    }
    let t = format!("tok-{}", st.token_requests);
    st.tokens.insert(t.clone());
    axum::Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": t})).into_response()
}

async fn delta(
    State((s, base)): State<(Shared, String)>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut st = s.lock().unwrap();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !st.tokens.contains(bearer) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired or is not yet valid."}})),
        )
            .into_response();
    }
    if st.throttle_next > 0 {
        st.throttle_next -= 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", "1")],
            axum::Json(
                json!({"error": {"code": "TooManyRequests", "message": "Too many requests"}}),
            ),
        )
            .into_response();
    }
    // Continuation: $skiptoken = "<kind>:<since>:<offset>", kind f (full) or d (delta).
    let (kind, since, offset) = if let Some(t) = q.get("$skiptoken") {
        let p: Vec<&str> = t.split(':').collect();
        (
            p[0].to_string(),
            p[1].parse().unwrap(),
            p[2].parse().unwrap(),
        )
    } else if let Some(t) = q.get("$deltatoken") {
        let v: u64 = t.parse().unwrap_or(0);
        if v < st.expired_before {
            return (
                StatusCode::GONE,
                axum::Json(json!({"error": {"code": "resyncRequired", "message": "Resync required. Replace any local cached copy with the full state."}})),
            )
                .into_response();
        }
        ("d".to_string(), v, 0usize)
    } else {
        assert!(
            q.get("$select")
                .is_some_and(|s| s.contains("alternativeSecurityIds")),
            "$select: {q:?}"
        );
        ("f".to_string(), 0, 0usize)
    };
    st.calls.push(format!("{kind}:{since}:{offset}"));
    let items: Vec<Value> = if kind == "f" {
        st.objects.values().cloned().collect()
    } else {
        let mut latest: BTreeMap<String, Value> = BTreeMap::new();
        for (v, c) in &st.changes {
            if *v > since {
                latest.insert(c["id"].as_str().unwrap().to_string(), c.clone());
            }
        }
        latest.into_values().collect()
    };
    let end = (offset + st.page_size).min(items.len());
    let page: Vec<Value> = items[offset.min(items.len())..end].to_vec();
    let mut body = json!({
        "@odata.context": format!("{base}/v1.0/$metadata#devices"),
        "value": page,
    });
    if end < items.len() {
        body["@odata.nextLink"] = json!(format!(
            "{base}/v1.0/devices/delta?$skiptoken={kind}:{since}:{end}"
        ));
    } else {
        body["@odata.deltaLink"] = json!(format!(
            "{base}/v1.0/devices/delta?$deltatoken={}",
            st.version
        ));
    }
    axum::Json(body).into_response()
}
