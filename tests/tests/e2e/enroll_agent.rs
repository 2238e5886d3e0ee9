//! The real agent enrolls with the real collector: `send --enroll-secret-file` trades the
//! secret for a device token kept in the spool directory and delivers with it; after an admin
//! revokes the device, the next `send` is refused once, enrolls again and delivers. No token
//! appears in the agent's output or the collector's log.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Output;

use dsreg_e2e::agent::{agent_binary, isolated_agent, spooled_reports};
use dsreg_e2e::collector::CollectorProcess;
use dsreg_e2e::process::output_text;
use dsreg_e2e::process::repo_root;

const SECRET: &str = "enroll-secret-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";
const MACHINE: &str = "enroll-e2e-0001";

fn send(collector: &str, spool: &Path, secret: &Path, status: &str) -> Output {
    isolated_agent(&agent_binary())
        .arg("send")
        .args(["--collector", collector])
        .arg("--status-file")
        .arg(
            repo_root()
                .join("endpoint-agent/testdata/dsregcmd")
                .join(status),
        )
        .args(["--machine-id", MACHINE, "--hostname", "ENROLL-E2E"])
        .arg("--spool-dir")
        .arg(spool)
        .arg("--enroll-secret-file")
        .arg(secret)
        .output()
        .expect("run dsreg-agent send")
}

fn delete(addr: SocketAddr, path: &str, token: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "DELETE {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_agent_enrolls_reports_with_its_token_and_reenrolls_once_after_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("enroll-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let admins = dir.path().join("admins");
    std::fs::write(&admins, format!("{ADMIN}\n")).unwrap();
    let c = CollectorProcess::start(
        &dir.path().join("dsreg.db"),
        dir.path(),
        &[
            "--enroll-secret-file",
            secret.to_str().unwrap(),
            "--admin-token-file",
            admins.to_str().unwrap(),
        ],
    )
    .unwrap();
    let spool = dir.path().join("spool");
    let url = c.grpc_url();

    let out = send(
        &url,
        &spool,
        &secret,
        "domain-joined-discover-0x801c001d-elevated-ws2022.txt",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let token_file = spool.join("device-token");
    let first = std::fs::read_to_string(&token_file).expect("device token stored");
    assert_eq!(first.len(), 64, "a 256-bit hex token");
    assert_eq!(spooled_reports(&spool), 0);
    let (status, body) = c.get_json(&format!("/api/v1/devices/{MACHINE}")).unwrap();
    assert_eq!(status, 200, "{body}");

    // Revoked: the next send is refused once, enrolls again, and delivers.
    assert_eq!(
        delete(
            c.http,
            &format!("/api/v1/devices/{MACHINE}/credential"),
            ADMIN
        ),
        204
    );
    let out = send(
        &url,
        &spool,
        &secret,
        "doc-diagnostic-data-discover-fail-0x801c0021-0x801c000c.txt",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let second = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(second.len(), 64);
    assert_ne!(first, second, "a new token after revocation");
    assert_eq!(spooled_reports(&spool), 0);

    // A wrong enroll secret: nothing delivered, the report stays spooled, exit 3.
    std::fs::remove_file(&token_file).unwrap();
    let wrong = dir.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-enroll-secret-000000\n").unwrap();
    let out = send(
        &url,
        &spool,
        &wrong,
        "domain-joined-discover-0x801c001d-elevated-ws2022.txt",
    );
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("--enroll-secret-file"),
        "{}",
        output_text(&out)
    );

    let log = c.log();
    let text = output_text(&out);
    for secret in [SECRET, &first, &second] {
        assert!(!log.contains(secret), "a token in the collector log");
        assert!(!text.contains(secret), "a token in the agent's output");
    }
}
