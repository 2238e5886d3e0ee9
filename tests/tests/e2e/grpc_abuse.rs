//! Hostile gRPC clients against the real collector: oversized messages, over-limit batches,
//! undecodable bytes and invalid UTF-8 on the wire (hand-built frames through a raw codec),
//! thousands of unknown codes (label cardinality stays bounded), a replayed `report_id` with
//! other content, idle and half-open connections, and many concurrent clients. After every
//! case the collector still answers `/readyz` and stores a normal report.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dsreg_e2e::collector::CollectorProcess;
use dsreg_e2e::metrics::{label_values, metric_sum};
use dsreg_e2e::reports::{ReportBuilder, report_id, send_accepted};
use dsreg_e2e::rng::Lcg;
use dsreg_proto::catalog;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{ExtraField, Report, ReportAck, ReportBatch, ReportStatus};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

const MAX_BATCH: usize = 50;
const MAX_MESSAGE: usize = 65_536;

/// Sends pre-encoded bytes as the request message; decodes the answer as a `ReportAck`.
#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct AckDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ReportAck;
    type Encoder = RawEncoder;
    type Decoder = AckDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> AckDecoder {
        AckDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for AckDecoder {
    type Item = ReportAck;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ReportAck>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        ReportAck::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

async fn send_raw(channel: &Channel, bytes: Vec<u8>) -> Result<ReportAck, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(bytes),
        PathAndQuery::from_static("/dsreg.v1.Telemetry/Report"),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

fn uuid(n: u64) -> String {
    report_id(n)
}

fn report(n: u64, machine: &str, hostname: &str) -> Report {
    ReportBuilder::new(n, machine)
        .machine(machine)
        .hostname(hostname)
        .build()
}

fn failing(n: u64, code: u32) -> Report {
    ReportBuilder::new(n, "card")
        .failure("2025-03-09T11:00:00Z", code)
        .build()
}

fn statuses(ack: &ReportAck) -> Vec<ReportStatus> {
    ack.results.iter().map(|r| r.status()).collect()
}

/// Protobuf wire helpers for hand-built (malformed) messages.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(tag << 3 | 2), out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A batch of one report whose `field` (1 report_id, 2 machine_id, 3 hostname) is `raw`.
fn batch_with_raw_string(field: u32, raw: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    for (tag, value) in [
        (1, uuid(990_000).into_bytes()),
        (2, b"utf8-machine".to_vec()),
    ] {
        if tag != field {
            len_field(tag, &value, &mut r);
        }
    }
    len_field(field, raw, &mut r);
    let mut b = Vec::new();
    len_field(1, &r, &mut b);
    b
}

struct Probe {
    next: AtomicUsize,
}

impl Probe {
    /// `/readyz` is 200 and a fresh report is ACCEPTED.
    async fn serving(&self, c: &CollectorProcess, channel: &Channel, after: &str) {
        let (status, body) = c.get_json("/readyz").unwrap();
        assert_eq!(status, 200, "after {after}: /readyz {body}\n{}", c.log());
        let n = 800_000 + self.next.fetch_add(1, Ordering::SeqCst) as u64;
        let ack = TelemetryClient::new(channel.clone())
            .report(ReportBatch {
                reports: vec![report(n, &format!("probe-{n}"), "PROBE")],
            })
            .await
            .unwrap_or_else(|e| panic!("after {after}: a normal report failed: {e:?}"))
            .into_inner();
        assert_eq!(statuses(&ack), [ReportStatus::Accepted], "after {after}");
    }
}

#[test]
fn hostile_grpc_clients_are_refused_and_the_collector_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dsreg.db");
    let max_batch = MAX_BATCH.to_string();
    let max_message = MAX_MESSAGE.to_string();
    let c = CollectorProcess::start(
        &db,
        dir.path(),
        &[
            "--max-batch",
            &max_batch,
            "--max-message-bytes",
            &max_message,
        ],
    )
    .unwrap();
    let probe = Probe {
        next: AtomicUsize::new(0),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(c.grpc_url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = TelemetryClient::new(channel.clone());
        probe.serving(&c, &channel, "start").await;

        // 1. Oversized message → RESOURCE_EXHAUSTED.
        let mut big = report(1, "big", "BIG");
        big.snapshot.as_mut().unwrap().extra.push(ExtraField {
            section: "x".into(),
            key: "k".into(),
            value: "v".repeat(MAX_MESSAGE * 2),
        });
        let err = client
            .report(ReportBatch { reports: vec![big] })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        probe.serving(&c, &channel, "oversized message").await;

        // 2. A batch over --max-batch → INVALID_ARGUMENT naming the limit.
        let reports = (0..=MAX_BATCH as u64)
            .map(|i| report(100 + i, &format!("over-{i}"), "OVER"))
            .collect();
        let err = client.report(ReportBatch { reports }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(&format!("limit of {MAX_BATCH}"))
                && err.message().contains("max_batch"),
            "{}",
            err.message()
        );
        probe.serving(&c, &channel, "batch over the limit").await;

        // 3. Undecodable bytes → INVALID_ARGUMENT (the client's fault, not INTERNAL).
        let valid = ReportBatch {
            reports: vec![report(200, "valid", "VALID")],
        }
        .encode_to_vec();
        let mut rng = Lcg::new(7);
        let mut garbage: Vec<Vec<u8>> = vec![
            vec![0xff; 64],
            vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
            vec![0x0f],
            vec![0x0a, 0x05, 0x0a],
            valid[..valid.len() / 2].to_vec(),
        ];
        garbage.extend((0..8).map(|_| {
            (0..rng.range(1, 300))
                .map(|_| rng.next_u64() as u8)
                .collect()
        }));
        for (i, bytes) in garbage.into_iter().enumerate() {
            if ReportBatch::decode(bytes.as_slice()).is_ok() {
                continue; // random bytes that happen to decode say nothing
            }
            let err = send_raw(&channel, bytes).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "garbage #{i}: {err:?}");
        }
        // The raw path itself works: valid bytes are ACCEPTED.
        let ack = send_raw(&channel, valid).await.unwrap();
        assert_eq!(statuses(&ack), [ReportStatus::Accepted]);
        probe.serving(&c, &channel, "undecodable bytes").await;

        // 4. Invalid UTF-8 in a string field → refused, nothing stored.
        for (field, raw) in [
            (2, b"\xff\xfe".as_slice()),
            (3, b"PC-\xc3\x28".as_slice()),
            (3, b"\xed\xa0\x80".as_slice()), // an encoded lone surrogate
            (1, b"\x80".as_slice()),
        ] {
            let err = send_raw(&channel, batch_with_raw_string(field, raw))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "field {field}: {err:?}");
        }
        let (status, _) = c.get_json("/api/v1/devices/utf8-machine").unwrap();
        assert_eq!(status, 404, "a refused report must not be stored");
        probe.serving(&c, &channel, "invalid utf-8").await;

        // 5. Thousands of distinct codes outside the catalog → bounded label sets.
        let known: std::collections::BTreeSet<String> = catalog::entries()
            .iter()
            .flat_map(|e| std::iter::once(e.code).chain(e.aliases.iter().copied()))
            .map(dsreg_proto::hex)
            .collect();
        let codes: Vec<u32> = (0..)
            .map(|i| 0x801c_8000u32 + i)
            .filter(|c| catalog::lookup(*c).is_none())
            .take(2000)
            .collect();
        for (chunk_no, chunk) in codes.chunks(MAX_BATCH).enumerate() {
            let reports = chunk
                .iter()
                .enumerate()
                .map(|(i, code)| failing(10_000 + (chunk_no * MAX_BATCH + i) as u64, *code))
                .collect();
            send_accepted(&mut client, reports).await.unwrap();
        }
        let (_, text) = dsreg_e2e::http::http_get(&c.url("/metrics")).unwrap();
        let bound = known.len() + 32 + 2; // catalog codes, admitted unknowns, "other", ""
        for family in ["dsreg_devices_failing", "dsreg_registration_failures_total"] {
            let values = label_values(&text, family, "code");
            assert!(
                values.len() <= bound,
                "{family}: {} code labels > {bound}",
                values.len()
            );
            assert!(
                values.contains("other"),
                "{family}: no folded samples: {values:?}"
            );
            let unknown = values
                .iter()
                .filter(|v| !known.contains(*v) && *v != "other" && !v.is_empty())
                .count();
            assert!(unknown <= 32, "{family}: {unknown} unknown codes admitted");
        }
        assert_eq!(
            metric_sum(&text, "dsreg_registration_failures_total"),
            2000.0,
            "every attempt counted once, whatever its label"
        );
        probe.serving(&c, &channel, "label cardinality").await;

        // 6. A report_id replayed with different content → REJECTED; the first copy stays.
        let first = report(300, "replay", "FIRST-COPY");
        let ack = client
            .report(ReportBatch {
                reports: vec![first.clone()],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(statuses(&ack), [ReportStatus::Accepted]);
        let mut second = first.clone();
        second.hostname = "SECOND-COPY".into();
        let ack = client
            .report(ReportBatch {
                reports: vec![second, first.clone()],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            statuses(&ack),
            [ReportStatus::Rejected, ReportStatus::Duplicate]
        );
        assert!(
            ack.results[0].message.contains("report_id"),
            "{:?}",
            ack.results[0]
        );
        let (status, d) = c.get_json("/api/v1/devices/replay").unwrap();
        assert_eq!(status, 200);
        assert_eq!(d["hostname"], "FIRST-COPY", "{d}");
        probe.serving(&c, &channel, "replay").await;

        // 7. Idle and half-open connections do not starve normal clients.
        let mut held = Vec::new();
        for i in 0..400 {
            let addr = if i % 2 == 0 { c.grpc } else { c.http };
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::AsyncWriteExt as _;
            match i % 8 {
                // Half an HTTP/2 preface, half an HTTP/1 request head.
                0 => s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap(),
                1 => s
                    .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .unwrap(),
                _ => {}
            }
            held.push(s);
        }
        probe.serving(&c, &channel, "400 idle connections").await;
        let fresh = tonic::transport::Endpoint::from_shared(c.grpc_url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        probe
            .serving(&c, &fresh, "400 idle connections, new channel")
            .await;
        drop(held);

        // 8. Many concurrent clients: all acked, each report stored once.
        let (_, before) = dsreg_e2e::http::http_get(&c.url("/metrics")).unwrap();
        let devices_before = metric_sum(&before, "dsreg_devices");
        let (tasks, batches, per) = (32u64, 20u64, 5u64);
        let retries = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let url = c.grpc_url();
                let retries = retries.clone();
                tokio::spawn(async move {
                    let mut client = TelemetryClient::connect(url).await.unwrap();
                    for b in 0..batches {
                        let reports: Vec<Report> = (0..per)
                            .map(|i| {
                                let n = 1_000_000 + (t * batches + b) * per + i;
                                report(n, &format!("conc-{n}"), "CONC")
                            })
                            .collect();
                        let mut attempts = 0;
                        let ack = loop {
                            match client
                                .report(ReportBatch {
                                    reports: reports.clone(),
                                })
                                .await
                            {
                                Ok(ack) => break ack.into_inner(),
                                Err(e) if e.code() == Code::Unavailable && attempts < 200 => {
                                    // Backpressure: the writer queue is full; honour the hint.
                                    attempts += 1;
                                    retries.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                Err(e) => panic!("task {t} batch {b}: {e:?}"),
                            }
                        };
                        assert_eq!(
                            statuses(&ack),
                            vec![ReportStatus::Accepted; per as usize],
                            "task {t} batch {b}"
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let (_, after) = dsreg_e2e::http::http_get(&c.url("/metrics")).unwrap();
        let stored = metric_sum(&after, "dsreg_devices") - devices_before;
        assert_eq!(
            stored,
            (tasks * batches * per) as f64,
            "each report stored once"
        );
        eprintln!(
            "concurrency: {} reports, {} backpressure retries",
            tasks * batches * per,
            retries.load(Ordering::Relaxed)
        );
        probe.serving(&c, &channel, "concurrent clients").await;
    });

    // 9. Idle and half-open connections do not hold a graceful shutdown hostage.
    let held: Vec<std::net::TcpStream> = (0..40)
        .map(|i| {
            use std::io::Write as _;
            let addr = if i % 2 == 0 { c.grpc } else { c.http };
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            if i % 4 < 2 {
                let head: &[u8] = if i % 2 == 0 {
                    b"PRI * HTTP/2.0\r\n"
                } else {
                    b"GET /readyz HTTP/1.1\r\n"
                };
                s.write_all(head).unwrap();
            }
            s
        })
        .collect();
    let mut c = c;
    let status = c.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "exit {status}:\n{}", c.log());
    assert!(c.log().contains("wal checkpointed"), "{}", c.log());
    drop(held);
}
