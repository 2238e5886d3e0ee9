//! Delivery: drains the spool to the collector, oldest first, each report once.
//!
//! A report leaves the spool only when the collector's ack names it as `ACCEPTED` or
//! `DUPLICATE` (the collector acks after its commit). `REJECTED` reports will never be
//! accepted as they are, so they move to `rejected/` beside the spool for a human to read,
//! instead of blocking the queue forever. Anything else — no connection, a timeout, a full
//! collector queue — leaves the spool untouched for the next attempt.
//!
//! Plain HTTP is allowed only to a loopback collector unless the caller says `insecure`.
//! `https://` uses the TLS files of [`CredentialFiles`]; the bearer token goes on every call.
//! A certificate the agent does not trust, a token the collector refuses and a client
//! certificate the collector requires (mTLS) but did not get or did not accept get their own
//! errors ([`DeliveryError::Untrusted`], [`DeliveryError::TokenRefused`],
//! [`DeliveryError::ClientCertificate`]) naming the flag to fix. With TLS 1.3 the collector
//! checks the client certificate after the handshake looks complete to the client, so its
//! refusal (a `certificate_required` or certificate alert) surfaces on the first call, inside
//! the transport error's source chain, not at connect; both places are examined.
//!
//! Size: about 440 lines of code; the rest of the file is its unit tests, kept beside it.

use std::net::IpAddr;
use std::time::Duration;

use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::{ReportBatch, ReportStatus};
use tonic::transport::Endpoint;

use crate::credentials::{Client, CredentialError, CredentialFiles};
use crate::spool::{Spool, SpoolError};

/// How to reach the collector.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Collector URL, `http://host:port` or `https://host:port`.
    pub collector: String,
    /// CA, client certificate and token files.
    pub credentials: CredentialFiles,
    /// Allow plain HTTP to a non-loopback collector.
    pub insecure: bool,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Reports per `Report` call.
    pub batch_size: usize,
    /// Enrollment: report with a device token of our own (see [`crate::enroll`]).
    pub enrollment: Option<crate::enroll::Enrollment>,
}

impl DeliveryConfig {
    /// Defaults for a collector URL: 5 s connect, 30 s request, 100 reports per call.
    pub fn new(collector: impl Into<String>) -> Self {
        DeliveryConfig {
            collector: collector.into(),
            credentials: CredentialFiles::default(),
            insecure: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            batch_size: 100,
            enrollment: None,
        }
    }
}

/// Why a delivery attempt stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The URL is not usable; retrying will not help.
    #[error("collector URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The collector could not be reached or did not answer; the reports stay spooled.
    #[error("collector {url} unreachable: {reason}")]
    Unreachable {
        /// The collector URL.
        url: String,
        /// The transport error.
        reason: String,
        /// The collector's retry hint, if it gave one.
        retry_after: Option<Duration>,
    },
    /// The collector refused the call (not a transport problem).
    #[error("collector {url} refused the batch: {code:?}: {message}")]
    Refused {
        /// The collector URL.
        url: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// The collector's TLS certificate failed verification.
    #[error(
        "the collector {url}'s TLS certificate is not trusted ({reason}); pass the CA \
         certificate that signed it with --ca-file FILE (settings key ca_file)"
    )]
    Untrusted {
        /// The collector URL.
        url: String,
        /// What the TLS library said.
        reason: String,
    },
    /// The collector requires a client certificate (mTLS) and got none, or refused the one
    /// presented. The reports stay spooled: this is a settings problem that may be fixed.
    #[error("{problem}: {hint} (collector {url}: {reason})")]
    ClientCertificate {
        /// The collector URL.
        url: String,
        /// What happened, in words.
        problem: &'static str,
        /// What to do.
        hint: &'static str,
        /// What the TLS library said.
        reason: String,
    },
    /// The collector refused the bearer token (or its absence).
    #[error("collector {url} refused the agent token ({code:?}): {hint}")]
    TokenRefused {
        /// The collector URL.
        url: String,
        /// UNAUTHENTICATED or PERMISSION_DENIED.
        code: tonic::Code,
        /// What to do.
        hint: &'static str,
    },
    /// The local TLS or token files are unusable.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// What one drain achieved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// Stored by the collector now.
    pub accepted: usize,
    /// Already stored earlier (a retry of a delivered report).
    pub duplicates: usize,
    /// Refused for good; moved to `rejected/`.
    pub rejected: usize,
}

/// Checks the URL and the loopback rule; returns the endpoint to connect to.
pub fn endpoint(cfg: &DeliveryConfig) -> Result<Endpoint, DeliveryError> {
    let bad = |reason: &str| DeliveryError::BadUrl {
        url: cfg.collector.clone(),
        reason: reason.to_string(),
    };
    let uri: tonic::codegen::http::Uri = cfg
        .collector
        .parse()
        .map_err(|e| bad(&format!("not a URL ({e})")))?;
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    match uri.scheme_str() {
        Some("http") => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback && !cfg.insecure {
                return Err(bad(
                    "plain http to a non-loopback collector would send device state in clear \
                     text; use https, or pass --insecure for a lab",
                ));
            }
        }
        Some("https") => {}
        _ => return Err(bad("the scheme must be http:// or https://")),
    }
    let endpoint = Endpoint::from_shared(cfg.collector.clone())
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.request_timeout);
    if uri.scheme_str() != Some("https") {
        if let Some(flag) = cfg.credentials.first_tls_flag() {
            return Err(CredentialError::TlsWithoutHttps { flag }.into());
        }
        return Ok(endpoint);
    }
    endpoint
        .tls_config(cfg.credentials.client_tls()?)
        .map_err(|e| {
            CredentialError::Tls {
                files: cfg.credentials.describe_tls(),
                reason: error_chain(&e),
            }
            .into()
        })
}

/// Connects to the collector; the client sends the token of `--token-file` (read now) on
/// every call.
pub async fn connect(cfg: &DeliveryConfig) -> Result<Client, DeliveryError> {
    let authorize = cfg.credentials.authorize()?;
    let channel = endpoint(cfg)?.connect().await.map_err(|e| {
        let reason = error_chain(&e);
        if let Some(e) = client_certificate_error(cfg, &reason) {
            e
        } else if reason.contains("invalid peer certificate") {
            DeliveryError::Untrusted {
                url: cfg.collector.clone(),
                reason,
            }
        } else {
            DeliveryError::Unreachable {
                url: cfg.collector.clone(),
                reason,
                retry_after: None,
            }
        }
    })?;
    // gzip both ways: a report is repetitive text (keys, GUIDs, the same codes), so it
    // shrinks several-fold (figures in the README). The collector must accept gzip (it does
    // since this change): upgrade collectors before agents.
    Ok(TelemetryClient::with_interceptor(channel, authorize)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip))
}

/// The hint of a [`DeliveryError::TokenRefused`].
fn token_hint(sent: bool) -> &'static str {
    if sent {
        "the token in the file named by --token-file (settings key token_file) is not a \
         current agent token for this collector; ask for the fleet's agent token"
    } else {
        "the collector requires an agent token: pass --token-file FILE (settings key token_file)"
    }
}

/// What to do when the collector requires a client certificate and none is configured.
const NEED_CERT_HINT: &str =
    "pass --client-cert and --client-key (or client_cert/client_key in the config)";

/// A [`DeliveryError::ClientCertificate`] when `reason` (an error chain) is the collector's TLS
/// alert about the client certificate.
fn client_certificate_error(cfg: &DeliveryConfig, reason: &str) -> Option<DeliveryError> {
    // rustls renders alerts as "received fatal alert: <AlertDescription>".
    let alert = reason.split("received fatal alert: ").nth(1)?;
    let has_cert = cfg.credentials.client_cert.is_some();
    let (problem, hint) = if alert.starts_with("CertificateRequired")
        || (!has_cert && alert.starts_with("HandshakeFailure"))
    {
        (
            "the collector requires a client certificate",
            NEED_CERT_HINT,
        )
    } else if has_cert
        && [
            "BadCertificate",
            "UnknownCA",
            "CertificateUnknown",
            "AccessDenied",
        ]
        .iter()
        .any(|a| alert.starts_with(a))
    {
        (
            "the collector refused the client certificate",
            "use a certificate and key (--client-cert/--client-key, or client_cert/client_key in \
             the config) issued by the CA the collector trusts for clients (its --tls-client-ca)",
        )
    } else {
        return None;
    };
    Some(DeliveryError::ClientCertificate {
        url: cfg.collector.clone(),
        problem,
        hint,
        reason: reason.to_string(),
    })
}

/// After a call failed at the transport over https without a client certificate: asks the
/// collector, with one diagnostic handshake, whether it requires one (see [`crate::tlsprobe`]).
async fn probe_client_certificate(
    cfg: &DeliveryConfig,
    status: &tonic::Status,
    reason: &str,
) -> Option<DeliveryError> {
    let transport = matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    );
    if !transport || cfg.credentials.client_cert.is_some() || !cfg.collector.starts_with("https://")
    {
        return None;
    }
    let asked =
        crate::tlsprobe::requests_client_certificate(&cfg.collector, cfg.connect_timeout).await;
    (asked == Some(true)).then(|| DeliveryError::ClientCertificate {
        url: cfg.collector.clone(),
        problem: "the collector requires a client certificate",
        hint: NEED_CERT_HINT,
        reason: format!(
            "{reason}; it asked for a client certificate during the TLS handshake and closed the \
             connection without one"
        ),
    })
}

/// A gRPC status's message followed by its transport error's source chain (where a TLS alert
/// received after the handshake ends up; the message alone says only "transport error").
fn status_chain(status: &tonic::Status) -> String {
    let mut s = status.message().to_string();
    append_sources(&mut s, std::error::Error::source(status));
    s
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    append_sources(&mut s, e.source());
    s
}

fn append_sources(s: &mut String, mut cur: Option<&(dyn std::error::Error + 'static)>) {
    while let Some(c) = cur {
        let part = c.to_string();
        // hyper and tonic repeat their source's text in their own; keep each phrase once.
        if !s.contains(&part) {
            s.push_str(": ");
            s.push_str(&part);
        }
        cur = c.source();
    }
}

/// The collector's retry hint (`retry-after-ms` metadata), if any.
pub fn retry_hint(status: &tonic::Status) -> Option<Duration> {
    status
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// Sends every spooled report, oldest first, in batches; stops at the first transport error.
pub async fn drain(
    spool: &mut Spool,
    client: &mut Client,
    cfg: &DeliveryConfig,
    now_unix: impl Fn() -> i64,
) -> Result<DeliveryOutcome, DeliveryError> {
    let mut outcome = DeliveryOutcome::default();
    while !spool.is_empty() {
        let batch = spool.oldest(cfg.batch_size.max(1))?;
        if batch.is_empty() {
            break;
        }
        let reports: Vec<_> = batch.iter().map(|(_, r)| r.clone()).collect();
        let ack = match client.report(ReportBatch { reports }).await {
            Ok(resp) => resp.into_inner(),
            Err(status) => {
                let reason = status_chain(&status);
                if let Some(e) = client_certificate_error(cfg, &reason) {
                    return Err(e);
                }
                if let Some(e) = probe_client_certificate(cfg, &status, &reason).await {
                    return Err(e);
                }
                return Err(match status.code() {
                    tonic::Code::Unavailable
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled => DeliveryError::Unreachable {
                        url: cfg.collector.clone(),
                        reason: status_chain(&status),
                        retry_after: retry_hint(&status),
                    },
                    code @ (tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) => {
                        DeliveryError::TokenRefused {
                            url: cfg.collector.clone(),
                            code,
                            hint: token_hint(cfg.credentials.token_file.is_some()),
                        }
                    }
                    code => DeliveryError::Refused {
                        url: cfg.collector.clone(),
                        code,
                        message: status.message().to_string(),
                    },
                });
            }
        };
        let mut progressed = false;
        for (seq, report) in &batch {
            let Some(result) = ack.results.iter().find(|r| r.report_id == report.report_id) else {
                continue;
            };
            match ReportStatus::try_from(result.status).unwrap_or_default() {
                ReportStatus::Accepted => outcome.accepted += 1,
                ReportStatus::Duplicate => outcome.duplicates += 1,
                ReportStatus::Rejected => {
                    outcome.rejected += 1;
                    spool.set_aside_rejected(*seq, &result.message)?;
                    progressed = true;
                    continue;
                }
                ReportStatus::Unspecified => continue,
            }
            spool.remove(*seq)?;
            progressed = true;
        }
        if !progressed {
            return Err(DeliveryError::Refused {
                url: cfg.collector.clone(),
                code: tonic::Code::Internal,
                message: "the ack named none of the reports sent".to_string(),
            });
        }
        spool.record_delivery(now_unix())?;
    }
    Ok(outcome)
}

/// Delay before retry number `attempt` (0-based): exponential backoff with full jitter,
/// `uniform(0, min(cap, base · 2^attempt))`, but never shorter than the collector's hint.
/// `unit` is a uniform random number in `[0, 1)`, passed in so the schedule is testable.
pub fn backoff(
    attempt: u32,
    base: Duration,
    cap: Duration,
    hint: Option<Duration>,
    unit: f64,
) -> Duration {
    let ceiling = base
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap);
    let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0));
    hint.map_or(jittered, |h| jittered.max(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback_unless_insecure() {
        for ok in [
            "http://127.0.0.1:50051",
            "http://localhost:50051",
            "http://[::1]:50051",
        ] {
            assert!(endpoint(&DeliveryConfig::new(ok)).is_ok(), "{ok}");
        }
        let err = endpoint(&DeliveryConfig::new("http://10.0.0.5:50051")).unwrap_err();
        assert!(err.to_string().contains("--insecure"), "{err}");
        let mut cfg = DeliveryConfig::new("http://10.0.0.5:50051");
        cfg.insecure = true;
        assert!(endpoint(&cfg).is_ok());
        let err = endpoint(&DeliveryConfig::new("ftp://x")).unwrap_err();
        assert!(err.to_string().contains("scheme"), "{err}");
    }

    #[test]
    fn https_reads_the_tls_files_and_tls_files_need_https() {
        assert!(endpoint(&DeliveryConfig::new("https://collector.example:50051")).is_ok());
        let mut cfg = DeliveryConfig::new("https://10.0.0.5:50051");
        cfg.credentials.ca_file = Some("/nonexistent/ca.pem".into());
        let err = endpoint(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("--ca-file") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        cfg.collector = "http://127.0.0.1:50051".into();
        let err = endpoint(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("--ca-file") && err.contains("https://"),
            "{err}"
        );
    }

    #[test]
    fn client_certificate_alerts_name_the_flags() {
        let mut cfg = DeliveryConfig::new("https://127.0.0.1:50051");
        let alert = |a: &str| format!("transport error: tls: received fatal alert: {a}");
        let e = client_certificate_error(&cfg, &alert("CertificateRequired"))
            .unwrap()
            .to_string();
        assert!(
            e.starts_with(
                "the collector requires a client certificate: pass --client-cert and \
                 --client-key (or client_cert/client_key in the config)"
            ),
            "{e}"
        );
        assert!(e.contains("https://127.0.0.1:50051"), "{e}");
        // TLS 1.2 servers answer a missing certificate with a handshake failure.
        assert!(client_certificate_error(&cfg, &alert("HandshakeFailure")).is_some());
        assert!(client_certificate_error(&cfg, &alert("BadCertificate")).is_none());
        assert!(client_certificate_error(&cfg, "connection refused").is_none());

        cfg.credentials.client_cert = Some("c.pem".into());
        cfg.credentials.client_key = Some("c.key".into());
        let e = client_certificate_error(&cfg, &alert("UnknownCA"))
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("the collector refused the client certificate")
                && e.contains("--tls-client-ca"),
            "{e}"
        );
        assert!(client_certificate_error(&cfg, &alert("HandshakeFailure")).is_none());
    }

    #[test]
    fn refused_token_messages_name_the_flag() {
        for sent in [true, false] {
            let e = DeliveryError::TokenRefused {
                url: "https://c:1".into(),
                code: tonic::Code::Unauthenticated,
                hint: token_hint(sent),
            };
            assert!(e.to_string().contains("--token-file"), "{e}");
        }
    }

    #[test]
    fn backoff_grows_exponentially_caps_and_honours_hint() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(600);
        let top = |a| backoff(a, base, cap, None, 0.999_999);
        assert!(top(0) < Duration::from_secs(1));
        assert!(top(3) > Duration::from_secs(7) && top(3) < Duration::from_secs(8));
        assert!(top(20) <= cap && top(20) > Duration::from_secs(599));
        assert!(top(u32::MAX) <= cap);
        assert_eq!(backoff(5, base, cap, None, 0.0), Duration::ZERO);
        let hint = Some(Duration::from_secs(30));
        assert_eq!(backoff(0, base, cap, hint, 0.5), Duration::from_secs(30));
        // A run of retries in virtual time: never above the cap, mean roughly half the ceiling.
        let mut rng = crate::deliver::tests::Lcg(7);
        let total: Duration = (0..10)
            .map(|a| backoff(a, base, cap, None, rng.next()))
            .sum();
        assert!(total < Duration::from_secs(1023), "{total:?}");
    }

    pub(crate) struct Lcg(pub u64);
    impl Lcg {
        pub fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }
}
