//! `GET /api/v1/reconcile` and the `cloud` block of a device document (Graph sync, issue 13).
//!
//! Both read only the published reconciliation (in memory, swapped whole by the sync), never
//! SQLite. Without the Graph settings the endpoint answers an empty list with
//! `"configured": false` (dashboards link to it either way) and device documents carry no
//! `cloud` block. Parameters are validated like the other lists: unknown
//! ones refused, bad values a 400 naming the parameter; keyset pagination on the entry key.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use serde_json::{Value, json};

use super::devices::{encode_cursor, parse_cursor, parse_limit};
use super::{DEFAULT_LIMIT, bad, rejected};
use crate::error::Error;
use crate::graph::GraphState;
use crate::graph::cloud::{CloudDevice, CloudState};
use crate::graph::reconcile::{ClientState, Entry, Reconciled, resolution};
use crate::store::read::rfc3339;

const PARAMS: &[&str] = &["client", "cloud", "limit", "cursor"];

/// A parsed `/api/v1/reconcile` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileFilter {
    /// Only this client state.
    pub client: Option<ClientState>,
    /// Only this cloud state.
    pub cloud: Option<CloudState>,
    /// Page size.
    pub limit: usize,
    /// Entries after this key.
    pub after: Option<String>,
}

/// Parses the query string of `/api/v1/reconcile`.
pub fn parse(q: &HashMap<String, String>) -> Result<ReconcileFilter, Error> {
    if let Some(k) = q.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(Error::InvalidArgument(format!(
            "unknown parameter {:?} (expected one of {})",
            super::shown(k),
            PARAMS.join(", ")
        )));
    }
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut f = ReconcileFilter {
        client: None,
        cloud: None,
        limit: DEFAULT_LIMIT,
        after: None,
    };
    if let Some(v) = get("client") {
        f.client = Some(ClientState::from_label(v).ok_or_else(|| {
            bad(
                "client",
                v,
                "expected joined, failing, not_joined or no_agent",
            )
        })?);
    }
    if let Some(v) = get("cloud") {
        f.cloud = Some(CloudState::from_label(v).ok_or_else(|| {
            bad(
                "cloud",
                v,
                "expected registered, pending, disabled or absent",
            )
        })?);
    }
    if let Some(v) = get("limit") {
        f.limit = parse_limit(v)?;
    }
    if let Some(v) = get("cursor") {
        f.after = Some(parse_cursor(v)?);
    }
    Ok(f)
}

/// One page of `r` under `f`: the entries and the cursor of the next page.
pub fn page<'a>(r: &'a Reconciled, f: &ReconcileFilter) -> (Vec<&'a Entry>, Option<String>) {
    let start = match &f.after {
        Some(k) => r.entries.partition_point(|e| e.key.as_str() <= k.as_str()),
        None => 0,
    };
    let mut out = Vec::new();
    let mut next = None;
    for e in &r.entries[start..] {
        if f.client.is_some_and(|c| c != e.client) || f.cloud.is_some_and(|c| c != e.cloud) {
            continue;
        }
        if out.len() == f.limit {
            next = out.last().map(|l: &&Entry| l.key.clone());
            break;
        }
        out.push(e);
    }
    (out, next)
}

/// The `cloud` block of a cloud object seen by a device in state `client`.
pub fn cloud_block(client: ClientState, state: CloudState, o: Option<&CloudDevice>) -> Value {
    let mut v = json!({
        "state": state.label(),
        "resolution": resolution(client, state),
    });
    if let Some(o) = o {
        v["object_id"] = json!(o.object_id);
        v["device_id"] = json!(o.device_id);
        v["display_name"] = json!(o.display_name);
        v["trust_type"] = json!(o.trust_type);
        v["enabled"] = json!(o.account_enabled);
        v["registered_keys"] = json!(o.registered_keys);
        v["registration_time"] = json!(o.registration_time);
        v["last_sign_in"] = json!(o.last_sign_in);
        v["last_on_premises_sync"] = json!(o.on_premises_last_sync);
        v["on_premises_sync_enabled"] = json!(o.on_premises_sync_enabled);
        v["on_premises_sid"] = json!(o.on_premises_sid);
        v["operating_system"] = json!(o.operating_system);
        v["operating_system_version"] = json!(o.operating_system_version);
        v["managed"] = json!(o.is_managed);
        v["compliant"] = json!(o.is_compliant);
        v["pending_since"] = json!(o.pending_since.map(rfc3339));
        v["read_at"] = json!(rfc3339(o.read_at));
    }
    v
}

fn entry_json(e: &Entry) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    v["cloud"] = cloud_block(e.client, e.cloud, e.object.as_deref());
    v["client"] = json!(e.client.label());
    v["object_id"] = json!(e.object.as_ref().map(|o| o.object_id.as_str()));
    v
}

/// The `cloud` block of the device `machine_id`, when the sync is on and has a state for it.
pub fn device_cloud(graph: Option<&GraphState>, machine_id: &str) -> Option<Value> {
    let r = graph?.reconciled();
    let e = r.entries.get(*r.by_machine.get(machine_id)?)?;
    let mut v = cloud_block(e.client, e.cloud, e.object.as_deref());
    v["client"] = json!(e.client.label());
    v["matched_by"] = json!(e.matched_by);
    Some(v)
}

/// `GET /api/v1/reconcile?client=&cloud=&limit=&cursor=`.
pub async fn list(
    graph: Option<Extension<Arc<GraphState>>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, Error> {
    let Query(q) = q.map_err(|e| rejected("query string", e))?;
    let f = parse(&q)?;
    let Some(Extension(graph)) = graph else {
        // An empty answer, not a 404: dashboards link here whether or not the sync is on.
        return Ok(axum::Json(json!({
            "configured": false,
            "message": "the Graph sync is not configured (--graph-tenant-id, \
                        --graph-client-id, --graph-client-secret-file)",
            "entries": [],
            "next_cursor": null,
            "counts": [],
        })));
    };
    let r = graph.reconciled();
    let (entries, next) = page(&r, &f);
    let counts: Vec<Value> = r
        .counts
        .iter()
        .map(|((client, cloud), n)| {
            json!({"client": client.label(), "cloud": cloud.label(), "devices": n,
                   "resolution": resolution(*client, *cloud)})
        })
        .collect();
    Ok(axum::Json(json!({
        "configured": true,
        "entries": entries.into_iter().map(entry_json).collect::<Vec<_>>(),
        "next_cursor": next.map(|k| encode_cursor(&k)),
        "counts": counts,
        "ambiguous_names": r.ambiguous_names,
        "complete": r.complete,
        "computed_at": rfc3339(r.at),
        "sync": graph.status(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::reconcile::{Reported, reconcile};

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let f = parse(&q(&[("client", "failing"), ("cloud", "pending")])).unwrap();
        assert_eq!(f.client, Some(ClientState::Failing));
        assert_eq!(f.cloud, Some(CloudState::Pending));
        for (k, v) in [
            ("client", "bogus"),
            ("cloud", "gone"),
            ("limit", "0"),
            ("cursor", "zz"),
        ] {
            let err = parse(&q(&[(k, v)])).unwrap_err().to_string();
            assert!(err.contains(k) && err.contains(v), "{err}");
        }
        let err = parse(&q(&[("state", "x")])).unwrap_err().to_string();
        assert!(err.contains("unknown parameter"), "{err}");
    }

    #[test]
    fn pages_follow_the_key_order_under_a_filter() {
        let reported: Vec<Reported> = (0..5)
            .map(|i| Reported {
                machine_id: format!("m-{i}"),
                hostname: format!("PC-{i}"),
                join_type: "hybrid_joined".into(),
                ..Reported::default()
            })
            .collect();
        let r = reconcile(&reported, Vec::new(), true, 0);
        let mut f = parse(&q(&[("limit", "2"), ("client", "joined")])).unwrap();
        let mut seen = Vec::new();
        loop {
            let (entries, next) = page(&r, &f);
            seen.extend(entries.iter().map(|e| e.key.clone()));
            match next {
                Some(k) => f.after = Some(k),
                None => break,
            }
        }
        assert_eq!(seen, ["m-0", "m-1", "m-2", "m-3", "m-4"]);
        let f = parse(&q(&[("cloud", "registered")])).unwrap();
        assert!(page(&r, &f).0.is_empty());
    }

    #[tokio::test]
    async fn without_the_sync_the_list_is_empty_not_an_error() {
        let axum::Json(v) = list(None, Ok(Query(q(&[])))).await.unwrap();
        assert_eq!(v["configured"], false);
        assert_eq!(v["entries"], json!([]));
        assert!(list(None, Ok(Query(q(&[("client", "x")])))).await.is_err());
    }
}
