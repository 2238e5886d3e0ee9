//! `/api/v1/devices`: the device list (filters, pages, cursors), as a typed answer; one
//! device's drill-down is in `device.rs`.
//!
//! Invariants: every filter and page parameter is checked here and a bad one is a 400 naming
//! it ([`parse_filter`]); a cursor is opaque to clients and decodes only to a machine id.
//! Nothing a device sent is interpreted here: strings pass through as data.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use dsreg_proto::{JoinType, Phase, catalog, labels};
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ReadErrors;
use super::{AppState, bad, rejected, shown};
use crate::error::Error;
use crate::store::read::{self, DeviceFilter, DeviceSummary};

/// Default page size of `/api/v1/devices`.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;
/// Events and history rows shown in a device drill-down.
pub const RECENT: usize = 20;

/// One page of `/api/v1/devices`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    /// The devices of this page, by machine id.
    pub devices: Vec<DeviceSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The query parameters `/api/v1/devices` accepts.
pub const LIST_PARAMS: &[&str] = &[
    "join_type",
    "phase",
    "cause",
    "code",
    "symbol",
    "hostname",
    "stale",
    "limit",
    "cursor",
];

/// Parses the query string of `/api/v1/devices` into a filter.
pub fn parse_filter(q: &HashMap<String, String>) -> Result<DeviceFilter, Error> {
    if let Some(k) = q.keys().find(|k| !LIST_PARAMS.contains(&k.as_str())) {
        return Err(Error::InvalidArgument(format!(
            "unknown parameter {:?} (expected one of {})",
            shown(k),
            LIST_PARAMS.join(", ")
        )));
    }
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut f = DeviceFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    if let Some(v) = get("join_type") {
        if v != labels::UNKNOWN && JoinType::from_label(v).is_none() {
            let all: Vec<_> = labels::join_type_labels().collect();
            return Err(bad(
                "join_type",
                v,
                &format!("expected one of {}", all.join(", ")),
            ));
        }
        f.join_type = Some(v.to_string());
    }
    if let Some(v) = get("phase") {
        // Exactly a label (the document's enum), not the lenient dsregcmd spellings.
        let p = Phase::ALL
            .into_iter()
            .find(|p| p.label() == v)
            .ok_or_else(|| {
                bad(
                    "phase",
                    v,
                    "expected pre-check, discover, auth, join or post-join",
                )
            })?;
        f.phase = Some(p.label().to_string());
    }
    if let Some(v) = get("cause") {
        if catalog::cause(v).is_none() {
            return Err(bad("cause", v, "not a cause id of /api/v1/catalog"));
        }
        f.cause = Some(v.to_string());
    }
    if let Some(v) = get("code") {
        if v.eq_ignore_ascii_case("none") {
            // Failures without a code (e.g. a server message alone): the `code=""` groups.
            f.no_code = true;
        } else {
            let code = catalog::parse_code(v)
                .or_else(|| catalog::find(v).map(|e| e.code))
                .ok_or_else(|| {
                    bad(
                        "code",
                        v,
                        "expected 0x-hex, a decimal code, a symbol, or none",
                    )
                })?;
            f.code = Some(code);
        }
    }
    if let Some(v) = get("symbol") {
        let e = catalog::find(v)
            .filter(|e| e.symbol.eq_ignore_ascii_case(v))
            .ok_or_else(|| bad("symbol", v, "not a catalog symbol"))?;
        f.symbol = Some(e.symbol.to_string());
    }
    if let Some(v) = get("hostname") {
        f.hostname = Some(v.to_string());
    }
    if let Some(v) = get("stale") {
        f.stale = Some(match v {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(bad("stale", v, "expected true or false")),
        });
    }
    if let Some(v) = get("limit") {
        f.limit = parse_limit(v)?;
    }
    if let Some(v) = get("cursor") {
        f.after = Some(parse_cursor(v)?);
    }
    Ok(f)
}

/// A `limit` parameter: a number in `1..=MAX_LIMIT` (the device list and the reconcile list).
pub fn parse_limit(v: &str) -> Result<usize, Error> {
    let n: usize = v.parse().map_err(|_| bad("limit", v, "not a number"))?;
    if !(1..=MAX_LIMIT).contains(&n) {
        return Err(bad(
            "limit",
            v,
            &format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(n)
}

/// A `cursor` parameter: one this API returned (see [`encode_cursor`]).
pub fn parse_cursor(v: &str) -> Result<String, Error> {
    decode_cursor(v).ok_or_else(|| bad("cursor", v, "not a cursor returned by this API"))
}

/// Cursors are the hex of the last machine id, behind a version tag (opaque to clients).
pub fn encode_cursor(machine_id: &str) -> String {
    let mut s = String::from("c1");
    for b in machine_id.as_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn decode_cursor(c: &str) -> Option<String> {
    let hex = c.strip_prefix("c1")?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// One page of devices matching `filter`.
pub async fn list(s: &AppState, filter: DeviceFilter) -> Result<DeviceList, Error> {
    let cutoff = s.stale_cutoff();
    let (devices, next) = s
        .store
        .read(move |c| read::list_devices(c, &filter, cutoff))
        .await?;
    Ok(DeviceList {
        devices,
        next_cursor: next.map(|id| encode_cursor(&id)),
    })
}

/// `GET /api/v1/devices`: one page of devices matching the filters.
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    responses(
        (status = 200, description = "OK", body = DeviceList),
        ReadErrors,
    ),
)]
pub async fn devices(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<DeviceList>, Error> {
    let Query(q) = q.map_err(|e| rejected("query string", e))?;
    let filter = parse_filter(&q)?;
    Ok(axum::Json(list(&s, filter).await?))
}
