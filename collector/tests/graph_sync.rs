//! The Graph sync against the stand-in Graph (tests/support/graph_standin.rs): paging, the
//! stored delta link, `@removed`, merged partial updates, 429 + Retry-After, 401 → a new
//! token, 410 → a full round, and a wrong secret reported as a configuration error that
//! names the setting and never contains the secret. The syncer runs on a blocking thread, the
//! stand-in on the test's runtime.

mod support;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsreg_collector::graph::cloud::{self, CloudState};
use dsreg_collector::graph::delta::{RoundStats, Syncer};
use dsreg_collector::graph::http::Http;
use dsreg_collector::graph::{Credential, GraphError, GraphSettings, SyncMetrics};
use rusqlite::Connection;
use serde_json::json;
use support::graph_standin::{self, Shared, device};

#[derive(Default)]
struct Incidents(Mutex<Vec<&'static str>>);

impl SyncMetrics for Incidents {
    fn error(&self, reason: &'static str) {
        self.0.lock().unwrap().push(reason);
    }
}

impl Incidents {
    fn count(&self, reason: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| **r == reason)
            .count()
    }
}

struct Fixture {
    syncer: Arc<Mutex<Syncer>>,
    standin: Shared,
    incidents: Arc<Incidents>,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

const SECRET: &str = "s3cr3t-Value~0123456789";

async fn fixture(secret_in_file: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("graph-secret");
    std::fs::write(&secret_file, format!("{secret_in_file}\n")).unwrap();
    fixture_with(Credential::SecretFile(secret_file), dir).await
}

async fn fixture_with(credential: Credential, dir: tempfile::TempDir) -> Fixture {
    let (base, standin) = graph_standin::start(SECRET, 2).await;
    let db = dir.path().join("g.db");
    let mut conn = Connection::open(&db).unwrap();
    dsreg_collector::store::migrate(&mut conn).unwrap();
    let settings = GraphSettings {
        tenant_id: "contoso.onmicrosoft.com".into(),
        client_id: "11111111-2222-3333-4444-555555555555".into(),
        credential,
        interval: Duration::from_secs(900),
        login_url: base.clone(),
        graph_url: base,
    };
    let incidents = Arc::new(Incidents::default());
    let http = Http::new(Arc::new(AtomicBool::new(false)));
    let syncer = Syncer::new(settings, http, conn, incidents.clone());
    Fixture {
        syncer: Arc::new(Mutex::new(syncer)),
        standin,
        incidents,
        db,
        _dir: dir,
    }
}

impl Fixture {
    async fn round(&self) -> Result<RoundStats, GraphError> {
        let s = self.syncer.clone();
        tokio::task::spawn_blocking(move || s.lock().unwrap().round())
            .await
            .unwrap()
    }

    fn stored(&self) -> Vec<cloud::CloudDevice> {
        let conn = Connection::open(&self.db).unwrap();
        let mut all = cloud::load_all(&conn).unwrap();
        all.sort_by(|a, b| a.object_id.cmp(&b.object_id));
        all
    }

    fn seed(&self, n: usize) {
        let mut st = self.standin.lock().unwrap();
        for i in 0..n {
            st.upsert(device(
                &format!("obj-{i}"),
                &format!("AAAAAAAA-0000-0000-0000-00000000000{i}"),
                &format!("PC-{i}"),
                "ServerAd",
                i % 2,
                true,
                Some(&format!("S-1-5-21-1-2-3-{}", 1000 + i)),
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_round_pages_then_delta_round_merges_and_removes() {
    let f = fixture(SECRET).await;
    f.seed(5);
    let s = f.round().await.unwrap();
    assert!(s.full, "{s:?}");
    assert_eq!(
        (s.pages, s.upserted),
        (3, 5),
        "5 objects, 2 per page: {s:?}"
    );
    let stored = f.stored();
    assert_eq!(stored.len(), 5);
    assert_eq!(
        stored[0].device_id.as_deref(),
        Some("aaaaaaaa-0000-0000-0000-000000000000")
    );
    assert_eq!(
        stored[0].state(),
        CloudState::Pending,
        "ServerAd without keys"
    );
    assert_eq!(stored[1].state(), CloudState::Registered);
    assert!(stored[0].pending_since.is_some() && stored[1].pending_since.is_none());
    assert_eq!(
        stored[0].on_premises_sid.as_deref(),
        Some("S-1-5-21-1-2-3-1000")
    );

    // A delta: obj-0 gets keys (only the changed property is sent), obj-1 is disabled,
    // obj-2 deleted, obj-9 new.
    {
        let mut st = f.standin.lock().unwrap();
        st.upsert(json!({"id": "obj-0", "alternativeSecurityIds": [{"type": 2, "key": "eA=="}]}));
        st.upsert(json!({"id": "obj-1", "accountEnabled": false}));
        st.remove("obj-2", "deleted");
        st.upsert(device(
            "obj-9",
            "bbbbbbbb-0000-0000-0000-000000000009",
            "PC-9",
            "AzureAd",
            1,
            true,
            None,
        ));
    }
    let s = f.round().await.unwrap();
    assert!(!s.full, "incremental with the stored delta link: {s:?}");
    assert_eq!((s.upserted, s.removed), (3, 1), "{s:?}");
    let calls = f.standin.lock().unwrap().calls.clone();
    assert!(calls.iter().any(|c| c.starts_with("d:5")), "{calls:?}");
    let stored = f.stored();
    let ids: Vec<&str> = stored.iter().map(|d| d.object_id.as_str()).collect();
    assert_eq!(ids, ["obj-0", "obj-1", "obj-3", "obj-4", "obj-9"]);
    assert_eq!(stored[0].state(), CloudState::Registered);
    assert_eq!(
        stored[0].display_name, "PC-0",
        "a partial update keeps the other properties"
    );
    assert!(stored[0].pending_since.is_none());
    assert_eq!(stored[1].state(), CloudState::Disabled);

    // Nothing changed: one page, nothing applied.
    let s = f.round().await.unwrap();
    assert_eq!((s.full, s.pages, s.upserted, s.removed), (false, 1, 0, 0));
    assert_eq!(
        f.standin.lock().unwrap().token_requests,
        1,
        "the token is cached"
    );
    let scopes = f.standin.lock().unwrap().scopes.clone();
    assert_eq!(scopes, ["https://graph.microsoft.com/.default"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_waits_for_retry_after() {
    let f = fixture(SECRET).await;
    f.seed(3);
    f.standin.lock().unwrap().throttle_next = 2;
    let t = Instant::now();
    let s = f.round().await.unwrap();
    assert_eq!(s.upserted, 3);
    assert_eq!(f.incidents.count("throttled"), 2);
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "two Retry-After: 1 waits, got {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_renewed_on_401() {
    let f = fixture(SECRET).await;
    f.seed(2);
    f.round().await.unwrap();
    f.standin.lock().unwrap().revoke_tokens();
    f.standin.lock().unwrap().upsert(device(
        "obj-7",
        "cccccccc-0000-0000-0000-000000000007",
        "PC-7",
        "ServerAd",
        0,
        true,
        None,
    ));
    let s = f.round().await.unwrap();
    assert_eq!(s.upserted, 1);
    assert_eq!(f.standin.lock().unwrap().token_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_delta_token_starts_a_full_round() {
    let f = fixture(SECRET).await;
    f.seed(4);
    f.round().await.unwrap();
    {
        // The object vanishes without a change record (the tenant's history is gone), and
        // every delta token issued so far expires.
        let mut st = f.standin.lock().unwrap();
        st.objects.remove("obj-3");
        st.expired_before = st.version + 1;
        st.version += 1;
    }
    let s = f.round().await.unwrap();
    assert!(s.full, "{s:?}");
    assert_eq!(s.vanished, 1, "{s:?}");
    assert_eq!(f.incidents.count("resync"), 1);
    assert_eq!(f.stored().len(), 3);
    let s = f.round().await.unwrap();
    assert!(!s.full, "back to incremental: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_names_the_setting_and_hides_the_secret() {
    let wrong = "wr0ng-Secret-Value-42";
    let f = fixture(wrong).await;
    f.seed(1);
    let err = f.round().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, GraphError::Config(_)), "{err:?}");
    assert_eq!(err.reason(), "token");
    assert!(msg.contains("--graph-client-secret-file"), "{msg}");
    assert!(msg.contains("AADSTS7000215"), "{msg}");
    assert!(!msg.contains(wrong) && !msg.contains(SECRET), "{msg}");
    assert!(f.stored().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_credentials_send_a_signed_client_assertion() {
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey};
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject;

    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (cert, key) = (
        fixtures.join("graph-test-cert.pem"),
        fixtures.join("graph-test-key.pem"),
    );
    let f = fixture_with(
        Credential::Certificate {
            cert,
            key: key.clone(),
        },
        tempfile::tempdir().unwrap(),
    )
    .await;
    f.seed(1);
    assert_eq!(f.round().await.unwrap().upserted, 1);
    let assertion = f.standin.lock().unwrap().assertions[0].clone();
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3, "{assertion}");
    let b64 = |s: &str| -> Vec<u8> {
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                _ => panic!("not base64url: {c}"),
            };
            bits = (bits << 6) | u32::from(v);
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        out
    };
    let header: serde_json::Value = serde_json::from_slice(&b64(parts[0])).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&b64(parts[1])).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(
        b64(header["x5t"].as_str().unwrap()).len(),
        20,
        "SHA-1 thumbprint"
    );
    assert_eq!(b64(header["x5t#S256"].as_str().unwrap()).len(), 32);
    assert_eq!(claims["iss"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(claims["sub"], claims["iss"]);
    assert!(
        claims["aud"]
            .as_str()
            .unwrap()
            .ends_with("/contoso.onmicrosoft.com/oauth2/v2.0/token"),
        "{claims}"
    );
    assert!(claims["exp"].as_u64().unwrap() > claims["nbf"].as_u64().unwrap());
    let der = PrivatePkcs8KeyDer::from_pem_file(&key).unwrap();
    let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pair.public().as_ref())
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64(parts[2]),
        )
        .expect("the assertion is signed with the certificate's key");
}
