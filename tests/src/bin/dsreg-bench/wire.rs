//! The clients' reports, sent pre-encoded.
//!
//! Invariant: the bytes a client sends for device `i` decode to exactly the `Report` that
//! [`build_report`] makes for it (with the report's own `report_id`, `collected_at` and, in
//! the full-row run, spool depth). [`Wire::new`] checks that on a sample of the fleet and
//! refuses to run the bench otherwise.
//!
//! Why: agents run on their own machines, but the bench's clients share the collector's two
//! cores, so whatever they spend is taken from the collector and not from the storage ceiling
//! it is compared with. Building each report (a deep copy of its profile's snapshot, stamped,
//! and for a failing device diagnosed again) and encoding it cost the clients several µs per
//! report (printed at start). A device's report is its class's snapshot (profile and build)
//! with a few fields of its own, so each class is encoded once, and a report is sent as a
//! short overlay of its own fields followed by its class's bytes: protobuf merges them (of a
//! field given twice the later wins, and a sub-message given twice is merged). The collector
//! sees a report with the snapshot field twice, which it decodes as any report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use dsreg_agent::simulate::fleet::{
    Profile, Templates, ad_domain, build_report, hostname, is_legacy, machine_id, profile_of,
    stamp_identity,
};
use dsreg_proto::v1::{AgentHealth, DeviceState};
use dsreg_proto::{Report, ReportAck, ReportBatch, Snapshot};
use prost::Message;
use prost::bytes::{BufMut, Bytes};
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::pick;

/// Devices the start-up check compares (spread over the fleet, so every class is met).
const CHECKED: u64 = 4000;

/// One class of devices: the same snapshot apart from identity.
struct Class {
    /// The class's report without its identity, `report_id` or `collected_at`, encoded.
    bytes: Bytes,
    joined: bool,
}

/// Pre-encoded reports over an existing fleet: random device order, fresh report ids.
#[derive(Clone)]
pub struct Wire {
    /// By `class_of`.
    classes: Arc<Vec<Class>>,
    seed: u64,
    devices: u64,
    cursor: Arc<AtomicU64>,
    /// Every report a state change (the full-row run): the agent's spool depth moves with
    /// each report, so no report repeats its device's stored state and each takes the
    /// writer's full path (part and device rows rewritten, view merged and re-diagnosed).
    changing: bool,
}

fn class_of(profile: Profile, index: u64) -> usize {
    let p = Profile::ALL
        .iter()
        .position(|q| *q == profile)
        .unwrap_or_default();
    p * 2 + usize::from(is_legacy(index))
}

impl Wire {
    /// Encodes each class once, at the populated snapshots' time `snapshot_at_s`, and checks
    /// the invariant on [`CHECKED`] devices; prints what a report costs the clients each way.
    pub fn new(
        templates: &Templates,
        seed: u64,
        devices: u64,
        snapshot_at_s: i64,
    ) -> anyhow::Result<Wire> {
        let mut found: Vec<Option<Class>> = (0..Profile::ALL.len() * 2).map(|_| None).collect();
        for i in 0..devices {
            let profile = profile_of(seed, i);
            let c = class_of(profile, i);
            if found[c].is_some() {
                continue;
            }
            let mut r = build_report(templates, seed, i, profile, snapshot_at_s, true);
            let snapshot = r.snapshot.get_or_insert_default();
            let joined = snapshot
                .device_state
                .as_ref()
                .is_some_and(|d| d.azure_ad_joined == Some(true));
            if let Some(d) = snapshot.device_state.as_mut() {
                d.device_name = None;
                d.domain_name = None;
            }
            if let Some(d) = snapshot.device_details.as_mut() {
                d.device_id = None;
            }
            r.report_id.clear();
            r.machine_id.clear();
            r.hostname.clear();
            r.ad_domain.clear();
            r.collected_at = None;
            found[c] = Some(Class {
                bytes: r.encode_to_vec().into(),
                joined,
            });
        }
        // A class no device of this fleet is in is never asked for; an empty one stands in.
        let classes = found
            .into_iter()
            .map(|c| {
                c.unwrap_or(Class {
                    bytes: Bytes::new(),
                    joined: false,
                })
            })
            .collect();
        let wire = Wire {
            classes: Arc::new(classes),
            seed,
            devices,
            cursor: Arc::new(AtomicU64::new(0)),
            changing: false,
        };
        wire.check(templates, snapshot_at_s)?;
        Ok(wire)
    }

    /// The same fleet, every report a state change.
    pub fn changing(&self) -> Wire {
        Wire {
            changing: true,
            ..self.clone()
        }
    }

    /// The overlay of device `index`'s own fields, and its class.
    fn overlay(&self, k: u64, index: u64, report_id: String, now_s: i64) -> (Report, &Class) {
        let class = &self.classes[class_of(profile_of(self.seed, index), index)];
        let mut snapshot = Snapshot {
            device_state: Some(DeviceState {
                azure_ad_joined: class.joined.then_some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        stamp_identity(&mut snapshot, self.seed, index);
        let report = Report {
            report_id,
            machine_id: machine_id(self.seed, index),
            hostname: hostname(index),
            ad_domain: ad_domain(index).to_string(),
            collected_at: Some(prost_types::Timestamp {
                seconds: now_s,
                nanos: 0,
            }),
            snapshot: Some(Box::new(snapshot)),
            agent: self.changing.then(|| AgentHealth {
                spool_depth: spool_depth(k),
                ..Default::default()
            }),
            ..Default::default()
        };
        (report, class)
    }

    /// Appends the next report, as field 1 of a `ReportBatch`, to `out`.
    fn put(&self, out: &mut impl BufMut, now_s: i64) {
        let k = self.cursor.fetch_add(1, Ordering::Relaxed);
        let index = pick(k, self.devices);
        self.put_report(out, k, index, dsreg_agent::report::new_report_id(), now_s);
    }

    /// Appends the `k`-th report, of device `index`, as field 1 of a `ReportBatch`, to `out`.
    fn put_report(&self, out: &mut impl BufMut, k: u64, index: u64, id: String, now_s: i64) {
        let (overlay, class) = self.overlay(k, index, id, now_s);
        let len = overlay.encoded_len() + class.bytes.len();
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, out);
        prost::encoding::encode_varint(len as u64, out);
        overlay.encode_raw(out);
        out.put_slice(&class.bytes);
    }

    /// A `ReportBatch` of `n` reports collected now, encoded when sent.
    pub fn batch(&self, n: usize) -> Batch {
        Batch {
            wire: self.clone(),
            n,
            now_s: super::unix_now(),
        }
    }

    /// The invariant, on [`CHECKED`] devices spread over the fleet, in both runs' forms; and
    /// the CPU a report costs the clients built and encoded, and pre-encoded (one thread).
    fn check(&self, templates: &Templates, snapshot_at_s: i64) -> anyhow::Result<()> {
        let step = (self.devices / CHECKED).max(1);
        let (mut typed, mut wire, mut n) = (0.0, 0.0, 0u32);
        for changing in [false, true] {
            let w = Wire {
                changing,
                ..self.clone()
            };
            for index in (0..self.devices).step_by(step as usize) {
                let k = index.wrapping_mul(7);
                let t0 = Instant::now();
                let profile = profile_of(self.seed, index);
                let mut want =
                    build_report(templates, self.seed, index, profile, snapshot_at_s, true);
                want.collected_at = Some(prost_types::Timestamp {
                    seconds: snapshot_at_s + 60,
                    nanos: 0,
                });
                if changing {
                    want.agent.get_or_insert_default().spool_depth = spool_depth(k);
                }
                let typed_len = std::hint::black_box(want.encode_to_vec()).len();
                let t1 = Instant::now();
                let mut sent = Vec::new();
                w.put_report(
                    &mut sent,
                    k,
                    index,
                    want.report_id.clone(),
                    snapshot_at_s + 60,
                );
                let t2 = Instant::now();
                typed += (t1 - t0).as_secs_f64();
                wire += (t2 - t1).as_secs_f64();
                n += 1;
                let got = ReportBatch::decode(sent.as_slice())
                    .with_context(|| format!("the pre-encoded report of device {index}"))?;
                anyhow::ensure!(
                    got.reports == [want],
                    "device {index} ({profile:?}{}): the pre-encoded report decodes to another \
                     report than build_report makes (typed {typed_len} bytes, pre-encoded {})",
                    if changing { ", full-row run" } else { "" },
                    sent.len()
                );
            }
        }
        let n = f64::from(n.max(1));
        eprintln!(
            "clients: a report costs {:.1} µs built and encoded, {:.1} µs pre-encoded (one thread, {n} reports, identical once decoded)",
            typed * 1e6 / n,
            wire * 1e6 / n
        );
        Ok(())
    }
}

/// A batch to send: its reports are encoded straight into the call's buffer. (Built first as
/// bytes of their own, a batch took one allocation of about 170 kB per call, and freeing those
/// on another thread contended on the allocator's locks: the bare gRPC server then answered
/// 30 % fewer reports per second than with typed reports.)
pub struct Batch {
    wire: Wire,
    n: usize,
    now_s: i64,
}

/// The full-row run's spool depth for the `k`-th report: never the stored one (none).
pub fn spool_depth(k: u64) -> u32 {
    1 + (k % 100_000) as u32
}

/// Sends a [`Batch`] to `Telemetry/Report`, decoding the ack.
#[derive(Clone)]
pub struct Sender {
    grpc: tonic::client::Grpc<Channel>,
}

impl Sender {
    pub fn new(channel: Channel) -> Sender {
        Sender {
            grpc: tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20),
        }
    }

    pub async fn report(&mut self, batch: Batch) -> Result<Response<ReportAck>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("channel not ready: {e}")))?;
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/dsreg.v1.Telemetry/Report");
        self.grpc.unary(Request::new(batch), path, RawCodec).await
    }
}

/// Encodes a [`Batch`]; decodes the ack with prost.
struct RawCodec;

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Batch;
    type Error = Status;

    fn encode(&mut self, batch: Batch, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        for _ in 0..batch.n {
            batch.wire.put(dst, batch.now_s);
        }
        Ok(())
    }
}

impl Codec for RawCodec {
    type Encode = Batch;
    type Decode = ReportAck;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<ReportAck>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}
