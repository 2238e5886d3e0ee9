//! The web UI's login flow end to end (issue 14): with reader tokens on, a browser without a
//! token is sent to the login page; posting the right token sets the `HttpOnly;
//! SameSite=Strict` cookie (plus `Secure` under TLS), with which `/` and `/ui/devices` answer
//! 200; a wrong token is refused and sets nothing, a forged cookie opens nothing.
//! In process: one collector over plain HTTP, one over TLS (test PKI).

use std::path::Path;

use dsreg_e2e::browser::{Browser, Page};
use dsreg_e2e::inproc::InProcessCollector;
use dsreg_e2e::tls::Pki;

const READER: &str = "reader-token-for-the-login-flow-0123456789";

fn tokens(dir: &Path) -> String {
    let path = dir.join("reader.tokens");
    std::fs::write(&path, format!("{READER}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

fn is_redirect_to_login(p: &Page, next: &str) -> bool {
    (300..400).contains(&p.status)
        && p.location
            .as_deref()
            .is_some_and(|l| l.starts_with("/ui/login") && l.contains(next))
}

/// The whole flow on `base`; returns the `Set-Cookie` of the successful login.
fn login_flow(base: &str, ca: Option<&Path>) -> String {
    let mut b = Browser::new(base, ca).unwrap();
    // Without a token: every page goes to the login page, which names where to come back to.
    let home = b.get("/").unwrap();
    assert!(is_redirect_to_login(&home, "next=%2F"), "{home:?}");
    let devices = b.get("/ui/devices").unwrap();
    assert!(
        is_redirect_to_login(&devices, "next=%2Fui%2Fdevices"),
        "{devices:?}"
    );
    let login = b.get("/ui/login?next=%2Fui%2Fdevices").unwrap();
    assert_eq!(login.status, 200, "{login:?}");
    assert!(login.body.contains("name=\"token\""), "{}", login.body);

    // A wrong token: refused, no cookie, still sent to the login page.
    let wrong = b
        .post_form(
            "/ui/login",
            &[("token", "not-the-token"), ("next", "/ui/devices")],
        )
        .unwrap();
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(wrong.set_cookie.is_none(), "{wrong:?}");
    assert!(b.cookie().is_none());
    assert!(is_redirect_to_login(&b.get("/").unwrap(), "next="));

    // The right token: a cookie, and back to where the browser was going.
    let ok = b
        .post_form("/ui/login", &[("token", READER), ("next", "/ui/devices")])
        .unwrap();
    assert!((300..400).contains(&ok.status), "{ok:?}");
    assert_eq!(ok.location.as_deref(), Some("/ui/devices"), "{ok:?}");
    let set_cookie = ok.set_cookie.clone().expect("a Set-Cookie on login");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            set_cookie.contains(attribute),
            "{attribute} missing: {set_cookie}"
        );
    }
    for page in ["/", "/ui/devices", "/ui/devices?cause=tenant_not_found"] {
        let p = b.get(page).unwrap();
        assert_eq!(p.status, 200, "{page} with the cookie: {p:?}");
        assert!(p.body.contains("<html"), "{page}: {}", p.body);
    }

    // A forged cookie opens nothing.
    b.set_cookie(Some("dsreg_reader=forged-0123456789".into()));
    assert!(is_redirect_to_login(
        &b.get("/ui/devices").unwrap(),
        "next="
    ));
    set_cookie
}

#[test]
fn a_browser_signs_in_with_the_reader_token_and_keeps_it_in_a_strict_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let c = InProcessCollector::start(
        &dir.path().join("dsreg.db"),
        &["--reader-token-file", &tokens(dir.path())],
    )
    .unwrap();
    let cookie = login_flow(&c.url(""), None);
    assert!(
        !cookie.contains("Secure"),
        "Secure over plain http: {cookie}"
    );
}

#[test]
fn under_tls_the_login_cookie_is_secure() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path()).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (cert, key, reader) = (s(&pki.server_cert), s(&pki.server_key), tokens(dir.path()));
    let c = InProcessCollector::start_tls(
        &dir.path().join("dsreg.db"),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--reader-token-file",
            &reader,
        ],
        &pki.ca,
    )
    .unwrap();
    let cookie = login_flow(&format!("https://{}", c.http), Some(&pki.ca));
    assert!(cookie.contains("Secure"), "no Secure under TLS: {cookie}");
}
