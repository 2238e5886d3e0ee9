//! One sync round of `GET /v1.0/devices/delta`: pages followed to the end, stored as they
//! come, the delta link kept for the next round.
//!
//! Invariants: a round without a stored delta link is a full round — at its end the objects
//! it did not list are deleted (they no longer exist); with a link it is incremental. An
//! expired link (410, or an error code `resyncRequired` / `syncStateNotFound` /
//! `syncStateInvalid`) clears it and starts a full round once. The bearer token is sent only
//! to the configured Graph origin: a `nextLink`/`deltaLink` elsewhere is refused. 401 drops
//! the cached token and retries once with a new one.

use std::sync::Arc;

use rusqlite::Connection;
use serde_json::Value;

use super::cloud::{self, SELECT};
use super::http::{Http, Reply};
use super::settings::GraphSettings;
use super::token::TokenSource;
use super::{GraphError, SyncMetrics};
use crate::store::now_ms;

/// Most pages in one round (a runaway `nextLink` chain ends the round as an error).
pub const MAX_PAGES: usize = 100_000;

/// What a round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundStats {
    /// A full (non-incremental) round.
    pub full: bool,
    /// Pages read.
    pub pages: usize,
    /// Objects inserted or updated.
    pub upserted: usize,
    /// Objects removed by `@removed`.
    pub removed: usize,
    /// Objects a full round did not list (deleted).
    pub vanished: usize,
}

/// The sync's state across rounds: HTTP client, token cache, own SQLite connection.
pub struct Syncer {
    settings: GraphSettings,
    http: Http,
    tokens: TokenSource,
    conn: Connection,
    metrics: Arc<dyn SyncMetrics>,
}

impl Syncer {
    /// A syncer over `conn` (a read-write connection to the collector's database).
    pub fn new(
        settings: GraphSettings,
        http: Http,
        conn: Connection,
        metrics: Arc<dyn SyncMetrics>,
    ) -> Syncer {
        Syncer {
            tokens: TokenSource::new(settings.clone()),
            settings,
            http,
            conn,
            metrics,
        }
    }

    /// The sync's connection (for the reconciliation reads).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The first URL of a full round.
    pub fn initial_url(&self) -> String {
        format!(
            "{}/v1.0/devices/delta?$select={}",
            self.settings.graph_url,
            SELECT.join(",")
        )
    }

    /// Runs one round (incremental when a delta link is stored).
    pub fn round(&mut self) -> Result<RoundStats, GraphError> {
        let st = cloud::state(&self.conn)?;
        if let Some(link) = st.delta_link {
            match self.run(link, false, st.full_rounds) {
                Err(GraphError::Resync) => {
                    tracing::info!("graph: delta token expired, starting a full round");
                    cloud::clear_delta_link(&self.conn)?;
                }
                other => return other,
            }
        }
        let url = self.initial_url();
        match self.run(url, true, st.full_rounds + 1) {
            Err(GraphError::Resync) => Err(GraphError::Server(
                "graph asked for a resync on a full round".into(),
            )),
            other => other,
        }
    }

    fn run(&mut self, start: String, full: bool, round: i64) -> Result<RoundStats, GraphError> {
        let mut stats = RoundStats {
            full,
            ..RoundStats::default()
        };
        let mut url = start;
        loop {
            if self.http.stopped() {
                return Err(GraphError::Stopped);
            }
            if stats.pages >= MAX_PAGES {
                return Err(GraphError::Decode(format!(
                    "more than {MAX_PAGES} pages in one round"
                )));
            }
            let page = self.fetch(&url)?;
            stats.pages += 1;
            let items = page
                .get("value")
                .and_then(Value::as_array)
                .ok_or_else(|| GraphError::Decode("page without a \"value\" array".into()))?;
            let s = cloud::apply_page(&mut self.conn, items, round, now_ms())?;
            stats.upserted += s.upserted;
            stats.removed += s.removed;
            let link = |k: &str| page.get(k).and_then(Value::as_str).map(str::to_string);
            if let Some(next) = link("@odata.nextLink") {
                url = self.same_origin(next)?;
            } else if let Some(delta) = link("@odata.deltaLink") {
                let delta = self.same_origin(delta)?;
                stats.vanished =
                    cloud::finish_round(&mut self.conn, full, round, &delta, now_ms())?;
                return Ok(stats);
            } else {
                return Err(GraphError::Decode(
                    "page with neither @odata.nextLink nor @odata.deltaLink".into(),
                ));
            }
        }
    }

    /// Refuses links outside the configured Graph origin (the token must not leave it).
    fn same_origin(&self, link: String) -> Result<String, GraphError> {
        same_origin_link(&self.settings.graph_url, &link).ok_or_else(|| {
            GraphError::Decode(format!(
                "graph returned a link outside {}: {}",
                self.settings.graph_url,
                link.chars().take(200).collect::<String>()
            ))
        })
    }

    /// GET one page: token, retries, 401 → new token once, errors classified.
    fn fetch(&mut self, url: &str) -> Result<Value, GraphError> {
        let metrics = self.metrics.clone();
        let mut reply = self.get_once(url, &metrics)?;
        if reply.status == 401 {
            tracing::info!("graph: 401, renewing the token");
            self.tokens.invalidate();
            reply = self.get_once(url, &metrics)?;
        }
        match reply.status {
            200 => serde_json::from_str(&reply.body)
                .map_err(|e| GraphError::Decode(format!("page is not JSON: {e}"))),
            410 => {
                metrics.error("resync");
                Err(GraphError::Resync)
            }
            s if is_resync(&reply) => {
                let _ = s;
                metrics.error("resync");
                Err(GraphError::Resync)
            }
            401 => Err(GraphError::Token(format!(
                "graph refused a fresh token (401): {}",
                graph_message(&reply)
            ))),
            403 => Err(GraphError::Config(format!(
                "graph refused the device list (403): grant the application permission \
                 Device.Read.All with admin consent to --graph-client-id: {}",
                graph_message(&reply)
            ))),
            s => Err(GraphError::Server(format!(
                "graph answered {s}: {}",
                graph_message(&reply)
            ))),
        }
    }

    fn get_once(&mut self, url: &str, metrics: &Arc<dyn SyncMetrics>) -> Result<Reply, GraphError> {
        let token = self.tokens.get(&self.http, |r| metrics.error(r))?;
        let http = &self.http;
        http.retrying(|| http.get(url, &token), |r| metrics.error(r))
    }
}

/// An expired delta token in an error body (`resyncRequired` and its relatives).
fn is_resync(reply: &Reply) -> bool {
    let code = serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    reply.status >= 400
        && matches!(
            code.as_str(),
            "resyncrequired" | "syncstatenotfound" | "syncstateinvalid"
        )
}

/// Graph's `error.code: error.message`, bounded, for logs.
fn graph_message(reply: &Reply) -> String {
    let v: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    let code = v["error"]["code"].as_str().unwrap_or("");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    format!("{code}: {msg}").chars().take(300).collect()
}

/// (scheme, authority) of a URL, lower-case.
fn origin(u: &str) -> (String, String) {
    let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    (scheme.to_ascii_lowercase(), authority.to_ascii_lowercase())
}

/// `link` when it is on the origin of `base`: a relative link is resolved against it; on a
/// loopback Graph (tests) `localhost`, `127.0.0.1` and `[::1]` with the same port are one
/// origin. `None` for anything else.
pub fn same_origin_link(base: &str, link: &str) -> Option<String> {
    let (scheme, authority) = origin(base);
    if link.starts_with('/') {
        return Some(format!("{scheme}://{authority}{link}"));
    }
    let (l_scheme, l_authority) = origin(link);
    let loopback = |a: &str| {
        let host = a.rsplit_once(':').map_or(a, |(h, _)| h);
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    };
    let port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_string());
    let same = l_scheme == scheme
        && (l_authority == authority
            || (loopback(&l_authority)
                && loopback(&authority)
                && port(&l_authority) == port(&authority)));
    same.then(|| link.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_stay_on_the_graph_origin() {
        let g = "https://graph.microsoft.com";
        let next = "https://graph.microsoft.com/v1.0/devices/delta?$skiptoken=x";
        assert_eq!(same_origin_link(g, next).as_deref(), Some(next));
        assert_eq!(
            same_origin_link(g, "/v1.0/devices/delta?$deltatoken=y").as_deref(),
            Some("https://graph.microsoft.com/v1.0/devices/delta?$deltatoken=y")
        );
        assert!(same_origin_link(g, "https://evil.example/v1.0/devices/delta").is_none());
        assert!(same_origin_link(g, "http://graph.microsoft.com/v1.0/x").is_none());
        assert!(same_origin_link(g, "https://graph.microsoft.com.evil.example/x").is_none());
        let t = "http://127.0.0.1:8080";
        assert!(same_origin_link(t, "http://localhost:8080/v1.0/x").is_some());
        assert!(same_origin_link(t, "http://localhost:9090/v1.0/x").is_none());
    }
}
