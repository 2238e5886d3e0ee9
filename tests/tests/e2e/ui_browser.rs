//! The web UI in a real browser: headless Chromium (Debian package `chromium`, installed by
//! `tests/run.sh`) loads the three pages of a real collector — the fleet, the filtered device
//! list and a device's drill-down — with a device whose host name, server message and `extra`
//! line are hostile (`<script>`, `<img onerror>`, quotes, 100 kB). The DOM the browser built must
//! hold no element the device injected, the escaped text must be visible, and each page is
//! screenshotted (`$CARGO_TARGET_TMPDIR/ui-screenshots/*.png`, for the README).
//!
//! A handful of browser launches in all; each is bounded by [`BROWSER_TIMEOUT`]. Without
//! Chromium the test fails naming the install command; it never passes silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dsreg_e2e::inproc::InProcessCollector;
use dsreg_e2e::process::{find_on_path, run_bounded};
use dsreg_e2e::reports::ReportBuilder;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{Report, ReportBatch, ReportStatus};

/// How the test tier installs the browser.
const INSTALL_HINT: &str = "apt-get install -y chromium";
/// One page load (start, render, exit) may take this long.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

const SCRIPT: &str = "<script>document.title='pwned'</script>";
const IMG: &str = "<img src=x onerror=\"document.title='pwned'\">";

fn chromium() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| find_on_path(n))
        .unwrap_or_else(|| {
            panic!(
                "headless Chromium is not on PATH. The UI browser test needs it; install it with \
                 `{INSTALL_HINT}` (tests/run.sh does this when it can)"
            )
        })
}

/// Runs Chromium headless on `url` with `args`; returns its stdout. Bounded by
/// [`BROWSER_TIMEOUT`]; its profile lives in `profile`.
fn browse(profile: &Path, args: &[&str], url: &str) -> String {
    let out = profile.join("stdout");
    let err = profile.join("stderr");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1280,900",
    ])
    .arg(format!(
        "--user-data-dir={}",
        profile.join("profile").display()
    ))
    .args(args)
    .arg(url);
    let status = run_bounded(cmd, &out, &err, BROWSER_TIMEOUT)
        .unwrap_or_else(|e| panic!("chromium on {url}: {e:#}"));
    assert!(
        status.success(),
        "chromium on {url}: {status}: {}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    std::fs::read_to_string(&out).unwrap_or_default()
}

fn report(n: u32, hostname: &str, message: &str) -> Report {
    ReportBuilder::new(u64::from(n), "ui")
        .machine(format!("ui-{n:03}"))
        .hostname(hostname)
        .domain_name("CORP")
        .failure("2026-11-30T08:00:00Z", 0x801c03f2)
        .server_error("DirectoryError", message)
        .extra(
            "Diagnostic Data",
            "Unmapped",
            format!("{SCRIPT} \"quoted\" 'single'"),
        )
        .build()
}

/// Elements in a serialized DOM whose tag is `tag`.
fn elements(dom: &str, tag: &str) -> usize {
    dom.to_ascii_lowercase().matches(&format!("<{tag}")).count()
}

#[test]
fn pages_render_in_chromium_and_show_hostile_strings_as_text() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let c = InProcessCollector::start(&dir.path().join("dsreg.db"), &[]).unwrap();

    // Hostile strings as long as the collector stores them (host names up to 256 bytes, texts
    // up to 16 KiB); a 100 kB host name is refused at ingest, so it never reaches a page.
    let host_head = format!("{SCRIPT}{IMG}\"'");
    let hostile_host = format!("{host_head}{}", "A".repeat(256 - host_head.len()));
    let pad = "B".repeat(15 * 1024);
    let hostile_msg =
        format!("The device object by the given id (x) is not found. {SCRIPT}{IMG} \"q\" {pad}");
    let mut reports = vec![
        report(0, &hostile_host, &hostile_msg),
        report(99, &format!("{SCRIPT}{}", "C".repeat(100 * 1024)), "x"),
    ];
    for i in 1..6 {
        reports.push(report(
            i,
            &format!("PC-{i:04}"),
            "The device object by the given id (0b9d) is not found.",
        ));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ack = rt.block_on(async {
        let mut client = TelemetryClient::connect(c.grpc_url()).await.unwrap();
        client
            .report(ReportBatch { reports })
            .await
            .unwrap()
            .into_inner()
    });
    let status: Vec<ReportStatus> = ack.results.iter().map(|r| r.status()).collect();
    assert_eq!(status[0], ReportStatus::Accepted, "{ack:?}");
    assert_eq!(
        status[1],
        ReportStatus::Rejected,
        "100 kB host name: {ack:?}"
    );
    assert!(
        status[2..].iter().all(|s| *s == ReportStatus::Accepted),
        "{ack:?}"
    );

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let pages = [
        ("fleet", c.url("/")),
        ("devices", c.url("/ui/devices?hostname=PC-&phase=join")),
        ("device", c.url("/ui/devices/PC-0001")),
    ];
    for (name, url) in &pages {
        let profile = tempfile::tempdir().unwrap();
        let dom = browse(profile.path(), &["--dump-dom"], url);
        assert!(dom.contains("dsreg-fleet"), "{name}: no page: {dom:.2000}");
        // The pages have no script and no image of their own: any such element was injected.
        assert_eq!(
            elements(&dom, "script"),
            0,
            "{name}: script element in the DOM"
        );
        assert_eq!(elements(&dom, "img"), 0, "{name}: img element in the DOM");
        assert!(!dom.contains("<title>pwned"), "{name}: injected code ran");
        let png = shots.join(format!("{name}.png"));
        let profile = tempfile::tempdir().unwrap();
        browse(
            profile.path(),
            &[&format!("--screenshot={}", png.display())],
            url,
        );
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.len() > 1000 && bytes.starts_with(b"\x89PNG"),
            "{name}: no screenshot at {}",
            png.display()
        );
    }
    // The hostile device's drill-down shows its strings as text, in full.
    let profile = tempfile::tempdir().unwrap();
    let dom = browse(
        profile.path(),
        &["--dump-dom"],
        &c.url("/ui/devices/ui-000"),
    );
    assert_eq!(
        elements(&dom, "script"),
        0,
        "script element in the drill-down"
    );
    assert_eq!(elements(&dom, "img"), 0, "img element in the drill-down");
    assert!(
        !dom.contains("<title>pwned"),
        "title rewritten by injected code"
    );
    assert!(
        dom.contains("&lt;script&gt;document.title"),
        "escaped host name: {dom:.3000}"
    );
    assert!(dom.contains("DirectoryError"), "server error shown");
    assert!(dom.contains("Unmapped"), "extra line shown");
    assert!(dom.contains(&pad), "the long message is shown, not dropped");
    eprintln!(
        "ui screenshots ({}): {}",
        browser.display(),
        shots.display()
    );
}
