//! `/ui/devices?…`: find devices by host name prefix and filter by cause, phase, join type and
//! staleness, a page at a time (the API's keyset cursor).
//!
//! The query string is parsed by the API's own [`parse_filter`], so the page accepts and
//! refuses exactly what `/api/v1/devices` does (a bad value is a 400 page naming it).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use dsreg_proto::{Phase, catalog};
use maud::{Markup, html};

use super::fleet::shown_name;
use super::layout::{PageError, device_href, list_href, page, short};
use crate::api::devices::{self, parse_filter};
use crate::api::{AppState, rejected};
use crate::store::read::DeviceSummary;

/// The device list page.
pub async fn page_handler(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Markup, PageError> {
    let Query(q) = q.map_err(|e| rejected("query string", e))?;
    let filter = parse_filter(&q)?;
    let list = devices::list(&s, filter).await?;
    let v = |k: &str| q.get(k).map(|v| v.trim()).unwrap_or("");
    let body = html! {
        form.filter method="get" action="/ui/devices" {
            label { "Host name starts with" input type="search" name="hostname" value=(v("hostname")); }
            label { "Cause" select name="cause" {
                option value="" { "any" }
                @for c in catalog::causes() {
                    option value=(c.id) selected[v("cause") == c.id] { (c.id) }
                }
            } }
            label { "Phase" select name="phase" {
                option value="" { "any" }
                @for p in Phase::ALL {
                    option value=(p.label()) selected[v("phase") == p.label()] { (p.label()) }
                }
            } }
            label { "Join type" select name="join_type" {
                option value="" { "any" }
                @for j in dsreg_proto::labels::join_type_labels() {
                    option value=(j) selected[v("join_type") == j] { (j) }
                }
            } }
            label { "Stale" select name="stale" {
                option value="" { "any" }
                option value="true" selected[v("stale") == "true"] { "stale only" }
                option value="false" selected[v("stale") == "false"] { "fresh only" }
            } }
            @for k in ["code", "symbol", "limit"] {
                @if !v(k).is_empty() { input type="hidden" name=(k) value=(v(k)); }
            }
            button type="submit" { "Filter" }
            " "
            a href="/ui/devices" { "clear" }
        }
        @if list.devices.is_empty() {
            div.box.info { p { "No device matches." } }
        } @else {
            table {
                thead { tr {
                    th { "Host name" } th { "Domain" } th { "Join type" } th { "Phase" }
                    th { "Cause" } th { "Code" } th { "Last seen" }
                } }
                tbody { @for d in &list.devices { (row(d)) } }
            }
        }
        @if let Some(cursor) = &list.next_cursor {
            p.pager { a href=(next_href(&q, cursor)) { "Next page →" } }
        }
    };
    Ok(page("Devices", body))
}

/// The next page: the same filters, the cursor the API returned.
fn next_href(q: &HashMap<String, String>, cursor: &str) -> String {
    let keep = [
        "hostname",
        "cause",
        "phase",
        "join_type",
        "stale",
        "code",
        "symbol",
        "limit",
    ];
    let mut params: Vec<(&str, &str)> = keep
        .iter()
        .map(|k| (*k, q.get(*k).map(|v| v.trim()).unwrap_or("")))
        .collect();
    params.push(("cursor", cursor));
    list_href(&params)
}

fn row(d: &DeviceSummary) -> Markup {
    html! {
        tr {
            td { a href=(device_href(&d.machine_id)) { (short(shown_name(&d.hostname, &d.machine_id))) } }
            td { (short(&d.ad_domain)) }
            td { (d.join_type) }
            @if let Some(f) = &d.failure {
                td { (f.phase) }
                td.bad { (f.cause) }
                td.mono { (f.code.as_deref().unwrap_or("")) " " (f.symbol) }
            } @else {
                td {} td.ok { "healthy" } td {}
            }
            td {
                (d.last_seen)
                @if d.stale { " " span.warn { "stale" } }
            }
        }
    }
}
