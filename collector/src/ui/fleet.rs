//! `/`: the fleet at a glance — devices by join type, stale and agent health counts, and the
//! failure groups by phase × cause with their trend (devices that entered in the last 24 hours
//! against the 24 before), cause text, resolution and sample devices.
//!
//! Reads the in-memory aggregates and the same failure groups `/api/v1/failures` answers;
//! sample device names are device-sent strings and are only ever spliced escaped.

use axum::extract::State;
use maud::{Markup, html};

use super::layout::{PageError, count, device_href, list_href, page, short};
use crate::api::AppState;
use crate::api::failures::{self, FailureGroup};
use crate::store::now_ms;

/// The fleet page.
pub async fn page_handler(State(s): State<AppState>) -> Result<Markup, PageError> {
    let counts = s.fleet.counts(now_ms());
    let groups = failures::groups(&s).await?.groups;
    let agents = crate::api::agents::health(&s).await?;
    let failing: u64 = groups.iter().map(|g| g.devices).sum();
    let body = html! {
        div.cards {
            div.card { b { (counts.total) } "devices" }
            div.card { b.bad { (failing) } a href=(list_href(&[])) { "failing" } }
            div.card { b { (counts.stale) } a href=(list_href(&[("stale", "true")])) { "stale" } }
            div.card { b { (agents.not_delivered_1d.devices) } "not delivered for a day" }
            div.card { b { (agents.spool_overflowing.devices) } "agents dropping reports" }
        }
        h2 { "Failures by phase and cause" }
        @if groups.is_empty() {
            div.box.ok { p { "No device reports a failure." } }
        } @else {
            table {
                thead { tr {
                    th { "Phase" } th { "Cause" } th { "Code" } th { "Devices" }
                    th title="Devices that entered the group in the last 24 hours (the 24 hours before)" { "New in 24 h" }
                    th { "Since" } th { "What it means / what to do" } th { "Sample devices" }
                } }
                tbody {
                    @for g in &groups { (group_row(g)) }
                }
            }
        }
        h2 { "Join types" }
        table.kv {
            tbody {
                @for (join_type, n) in &counts.devices {
                    tr {
                        th { a href=(list_href(&[("join_type", join_type)])) { (join_type) } }
                        td { (count(*n, "device")) }
                    }
                }
            }
        }
        h2 { "Agents" }
        table.kv {
            tbody {
                @for v in &agents.versions {
                    tr {
                        th { "dsreg-agent " @if v.version.is_empty() { "(version not reported)" } @else { (v.version) } }
                        td { (count(v.devices, "device")) }
                    }
                }
            }
        }
        @if !agents.not_delivered_1d.sample.is_empty() {
            h3 { "Not delivered for a day (oldest first)" }
            p {
                @for (i, d) in agents.not_delivered_1d.sample.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href=(device_href(&d.machine_id)) { (short(shown_name(&d.hostname, &d.machine_id))) }
                }
            }
        }
        @if !agents.spool_overflowing.sample.is_empty() {
            h3 { "Agents dropping spooled reports" }
            p {
                @for (i, d) in agents.spool_overflowing.sample.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href=(device_href(&d.machine_id)) { (short(shown_name(&d.hostname, &d.machine_id))) }
                    " (" (d.spool_dropped) " dropped)"
                }
            }
        }
    };
    Ok(page("Fleet", body))
}

/// A device's name for a link: its host name, else its machine id.
pub fn shown_name<'a>(hostname: &'a str, machine_id: &'a str) -> &'a str {
    if hostname.is_empty() {
        machine_id
    } else {
        hostname
    }
}

/// `+12 ↑ (3 the day before)`: growing is marked, so a spreading failure stands out.
fn trend(last: u64, previous: u64) -> Markup {
    let arrow = match last.cmp(&previous) {
        std::cmp::Ordering::Greater => "↑",
        std::cmp::Ordering::Less => "↓",
        std::cmp::Ordering::Equal => "=",
    };
    html! {
        @if last > previous { b.bad { "+" (last) " " (arrow) } } @else { "+" (last) " " (arrow) }
        br;
        span.muted { (previous) " the day before" }
    }
}

fn group_row(g: &FailureGroup) -> Markup {
    let code = g.code.as_deref().unwrap_or("");
    let filter = list_href(&[("phase", &g.phase), ("cause", &g.cause), ("code", code)]);
    html! {
        tr {
            td.nowrap { (g.phase) }
            td { a href=(filter) { code { (g.cause) } } }
            td {
                @if let Some(c) = &g.code { code { (c) } br; }
                @if !g.symbol.is_empty() { span.muted.mono { (g.symbol) } }
            }
            td { a href=(filter) { b { (g.devices) } } }
            td.nowrap { (trend(g.entered_24h, g.entered_previous_24h)) }
            td.muted { (g.first_seen.as_deref().map_or("", |t| t.get(..10).unwrap_or(t))) }
            td {
                @if let Some(t) = &g.cause_text { (t) }
                @if let Some(r) = &g.resolution { br; b { "Do: " } (r) }
            }
            td {
                @for (i, d) in g.sample_devices.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href=(device_href(d)) { (short(d)) }
                }
            }
        }
    }
}
