//! `/ui/devices/{key}`: the drill-down a technician reads — join type, the current failure
//! with its cause text and what to do, the evidence lines, the attempts timeline, the history
//! of transitions, agent health and the snapshot section by section.
//!
//! The page is built from the same [`DeviceDocument`] `/api/v1/devices/{key}` answers. Every
//! string in it (host name, server messages, evidence and `extra` lines) came from a device
//! and is spliced escaped; none is used as markup, a URL or a style.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use dsreg_proto::v1::Attempt;
use maud::{Markup, html};
use serde_json::Value;

use super::fleet::shown_name;
use super::layout::{PageError, enc, list_href, page};
use crate::api::device::{DeviceDocument, device_document};
use crate::api::{AppState, rejected};

/// Rows of the snapshot shown per section before the rest is summarised.
const MAX_SECTION_ROWS: usize = 400;

/// The drill-down page.
pub async fn page_handler(
    State(s): State<AppState>,
    graph: Option<axum::Extension<std::sync::Arc<crate::graph::GraphState>>>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Markup, PageError> {
    let Path(key) = key.map_err(|e| rejected("device key", e))?;
    let mut doc = device_document(&s, key).await?;
    doc.cloud =
        crate::api::reconcile::device_cloud(graph.as_deref().map(|g| g.as_ref()), &doc.machine_id);
    let title = shown_name(&doc.hostname, &doc.machine_id).to_string();
    Ok(page(&title, body(&doc)))
}

fn body(d: &DeviceDocument) -> Markup {
    html! {
        table.kv { tbody {
            tr { th { "Join type" } td {
                a href=(list_href(&[("join_type", &d.join_type)])) { b { (d.join_type) } }
            } }
            tr { th { "Machine id" } td.mono { (d.machine_id) } }
            tr { th { "Host name" } td { (d.hostname) } }
            tr { th { "AD domain" } td { (d.ad_domain) } }
            tr { th { "Entra device id" } td.mono { (d.entra_device_id.as_deref().unwrap_or("—")) } }
            tr { th { "Windows build" } td { (d.os_build) } }
            tr { th { "Last seen" } td {
                (d.last_seen)
                @if d.stale { " " span.warn { "stale: not heard from within the stale window" } }
            } }
            tr { th { "First seen" } td { (d.first_seen) } }
        } }
        (failure(d))
        (attempts(&d.snapshot.attempts))
        (cloud(d))
        (transitions(d))
        (agent(d))
        (snapshot(d))
        p.muted.noprint {
            "The same document as JSON: "
            a href=(format!("/api/v1/devices/{}", enc(&d.machine_id))) { "/api/v1/devices/…" }
        }
    }
}

fn failure(d: &DeviceDocument) -> Markup {
    html! {
        h2 { "What is wrong" }
        @if let Some(reason) = &d.snapshot.not_targeted {
            div.box.info { p {
                b { "Not targeted: " (reason.replace('_', " ")) }
                " — hybrid join is not expected on this device, so it is not counted as failing."
            } }
        }
        @match &d.failure {
            None => { div.box.ok { p { "No current failure." } } }
            Some(f) => {
                div.box {
                    p {
                        span.bad { (f.phase) " · " (f.cause) }
                        @if let Some(c) = &f.code { " · " code { (c) } }
                        @if !f.symbol.is_empty() { " " code { (f.symbol) } }
                        @if let Some(sc) = &f.sub_code { " (sub-error " code { (sc) } ")" }
                    }
                    @if let Some(since) = &d.failing_since { p.muted { "Failing since " (since) } }
                    @if let Some(t) = &f.cause_text { p { b { "Cause: " } (t) } }
                    @if let Some(r) = &f.resolution { p { b { "What to do: " } (r) } }
                    @if let (Some(t), Some(r)) = (&f.code_text, &f.code_resolution) {
                        p.muted { "The code: " (t) " " (r) }
                    }
                    @if let Some(e) = &f.server_error { p { b { "Server said: " } span.mono { (e) } } }
                    @if let Some(src) = &f.source { p.muted { "Read from " code { (src) } } }
                }
                p.noprint { a href=(list_href(&[("cause", &f.cause)])) { "Other devices with this cause" } }
                @if !f.evidence.is_empty() {
                    h3 { "Evidence" }
                    pre { @for line in &f.evidence { (line) "\n" } }
                }
            }
        }
    }
}

fn attempts(attempts: &[Attempt]) -> Markup {
    html! {
        h2 { "Join attempts (newest first)" }
        @if attempts.is_empty() {
            p.muted { "No join attempt recorded." }
        } @else {
            table {
                thead { tr {
                    th { "Time" } th { "Result" } th { "Phase" } th { "Code" }
                    th { "Server" } th { "Evidence" }
                } }
                tbody { @for a in attempts { tr {
                    td { (a.time.as_deref().unwrap_or("")) }
                    @if a.succeeded { td.ok { "joined" } } @else { td.bad { (a.cause) } }
                    td { (a.phase().label()) }
                    td.mono {
                        @if let Some(c) = a.code { (dsreg_proto::hex(c)) " " }
                        (a.symbol.as_deref().unwrap_or(""))
                    }
                    td {
                        @if let Some(t) = &a.server_error_type { b { (t) } " " }
                        (a.server_message.as_deref().unwrap_or(""))
                    }
                    td.mono.muted { (a.sources.join(", ")) }
                } } }
            }
        }
    }
}

/// Where the cloud (Microsoft Graph) state of the device goes once the device document has
/// its optional `cloud` block: render it here, and render nothing when it is absent.
fn cloud(d: &DeviceDocument) -> Markup {
    let Some(serde_json::Value::Object(c)) = &d.cloud else {
        return html! {};
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    html! {
        h2 { "Cloud (Microsoft Graph)" }
        table {
            tbody {
                @for (k, v) in c {
                    @if !v.is_null() {
                        tr { th { (k) } td { (text(v)) } }
                    }
                }
            }
        }
    }
}

fn transitions(d: &DeviceDocument) -> Markup {
    html! {
        h2 { "History" }
        @if d.transitions.is_empty() {
            p.muted { "No history kept." }
        } @else {
            table {
                thead { tr { th { "Received" } th { "Kind" } th { "Join type" } th { "Failure" } } }
                tbody { @for h in &d.transitions { tr {
                    td { (h.at) }
                    td { (h.kind) }
                    td { (h.join_type) }
                    @match &h.failure {
                        Some(f) => td.bad {
                            (f.phase) " · " (f.cause) " " span.mono { (f.code.as_deref().unwrap_or("")) }
                        },
                        None => td.ok { "healthy" },
                    }
                } } }
            }
        }
    }
}

fn agent(d: &DeviceDocument) -> Markup {
    let a = &d.agent;
    html! {
        h2 { "Agent" }
        table.kv { tbody {
            tr { th { "Version" } td { (a.version) } }
            tr { th { "Last delivery" } td { (a.last_delivery.as_deref().unwrap_or("—")) } }
            tr { th { "Spool" } td {
                (a.spool_depth) " waiting"
                @if a.spool_dropped > 0 { ", " span.bad { (a.spool_dropped) " dropped" } }
            } }
            tr { th { "Parse warnings" } td { (a.parse_warnings) } }
            @for (part, src) in &d.sources {
                tr { th { "Part " (part) } td {
                    "context " (src.context) ", received " (src.received_at)
                    @if let Some(c) = &src.collected_at { ", collected " (c) }
                } }
            }
        } }
    }
}

fn snapshot(d: &DeviceDocument) -> Markup {
    let value = serde_json::to_value(&d.snapshot).unwrap_or(Value::Null);
    let sections: Vec<(&String, &Value)> = match &value {
        Value::Object(m) => m.iter().filter(|(k, _)| k.as_str() != "attempts").collect(),
        _ => Vec::new(),
    };
    html! {
        h2 { "Snapshot" }
        @for (name, v) in sections {
            @let rows = rows_of(name, v);
            h3 {
                (name)
                @if let Some(part) = d.provenance.get(name.as_str()) {
                    " " span.muted { "(from the " (part) " part)" }
                }
            }
            table.kv { tbody {
                @for (k, val) in rows.iter().take(MAX_SECTION_ROWS) {
                    tr { th.mono { (k) } td.mono { (val) } }
                }
                @if rows.len() > MAX_SECTION_ROWS {
                    tr { td colspan="2" .muted { (rows.len() - MAX_SECTION_ROWS) " more rows in the JSON" } }
                }
            } }
        }
    }
}

/// The `(path, text)` rows of one snapshot section.
fn rows_of(name: &str, v: &Value) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    flatten(name, v, &mut rows);
    rows
}

/// Flattens a JSON value into `(path, text)` rows: objects by `.key`, arrays by `[i]`.
fn flatten(path: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), v, out);
            }
        }
        Value::String(s) => out.push((path.to_string(), s.clone())),
        Value::Null => {}
        other => out.push((path.to_string(), other.to_string())),
    }
}
