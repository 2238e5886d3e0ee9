//! What the Graph sync logs with a wrong secret in a world-readable file: a WARN about the
//! file's mode, an ERROR naming `--graph-client-secret-file` and `AADSTS7000215`, and never
//! the secret — even though the stand-in echoes it in its error description. One test per
//! binary: it installs the process-wide log subscriber.

mod support;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsreg_collector::config::Config;
use dsreg_collector::graph::Graph;
use dsreg_collector::metrics::Metrics;
use support::graph_standin;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_a_config_error_in_the_log_without_the_secret() {
    let log = Captured::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish(),
    )
    .unwrap();
    let (base, _standin) = graph_standin::start("the-right-secret-0123", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "Wrong-Secret-Do-Not-Log-42";
    let secret_file = dir.path().join("graph-secret");
    std::fs::write(&secret_file, wrong).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let db = dir.path().join("g.db");
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    dsreg_collector::store::migrate(&mut conn).unwrap();
    drop(conn);
    let config = Config {
        graph_tenant_id: Some("contoso.onmicrosoft.com".into()),
        graph_client_id: Some("11111111-2222-3333-4444-555555555555".into()),
        graph_client_secret_file: Some(secret_file),
        graph_login_url: base.clone(),
        graph_url: base,
        ..Config::default()
    };
    let graph =
        Arc::new(Graph::start(config.graph().unwrap(), &db, Arc::new(Metrics::new())).unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph.state().status().last_error.is_none() {
        assert!(Instant::now() < deadline, "no failed round reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = graph.state().status();
    let g = graph.clone();
    tokio::task::spawn_blocking(move || g.stop()).await.unwrap();

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let error = text
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("graph"))
        .unwrap_or_else(|| panic!("no ERROR line:\n{text}"));
    assert!(
        error.contains("--graph-client-secret-file") && error.contains("AADSTS7000215"),
        "{error}"
    );
    #[cfg(unix)]
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("readable by group or others")),
        "{text}"
    );
    assert!(!text.contains(wrong), "the secret reached the log:\n{text}");
    let last_error = status.last_error.unwrap();
    assert!(!last_error.contains(wrong), "{last_error}");
}
