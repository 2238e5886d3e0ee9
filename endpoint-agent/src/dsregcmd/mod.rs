//! The `dsregcmd /status` parser: capture bytes → [`Snapshot`] plus warnings (DESIGN §3).
//!
//! Map:
//! * [`decode`](mod@decode): bytes → text (UTF-8 ± BOM, UTF-16LE/BE, BOM-less UTF-16, cp850).
//! * `lines`: line splitting and classification (header box, decoration, key/value, keyless).
//! * `fields`: (section, key) → typed field, routing by key name where the layout needs it.
//! * `diagnostic_data`: the Diagnostic Data and Ngc Prerequisite Check part of the routing.
//! * `emit`: the typed setters and the `extra` / warnings sink.
//! * `values`: value shapes (YES/NO, codes, test results, timestamps, validity ranges).
//!
//! Invariants: [`parse`] is total (never panics on any bytes), makes one pass over the lines,
//! takes time linear in the input, and allocates only for the owned strings it stores.
//! It fills every section, `extra` and `warnings`; it never sets `join_type` or `failure`
//! (the diagnosis step does). Nothing is dropped: every line that is not structural (header
//! boxes, blank lines, Markdown decoration, the footer, known noise) is either typed or kept
//! in `extra` with its section title (`""` outside any section).
//!
//! Rules chosen where the output is ambiguous:
//! * **Empty values.** A printed key with an empty value (`MdmUrl :`) *was* in the output:
//!   string fields become `Some("")`; typed fields (bool, code, time…) stay unset and the
//!   line goes to `extra` without a warning.
//! * **Non-answers.** A typed field that printed something else stays unset and the line goes
//!   to `extra`; a warning is added only when the value looks malformed, not for legitimate
//!   `UNKNOWN`, `ERROR…`, `NONE`, `NOT SET`, `Managed by MDM`.
//! * **Wrapped values.** See `is_continuation` (below): a join adds a warning naming the key.
//! * **Keyless lines** that are not joined go to `extra` (key `""`): with a warning inside a
//!   section, without one outside any section (shell prompt, PowerShell banner).
//! * **Cut input.** A missing final newline, or an `Idp` that is not a domain name
//!   (`Idp : logi`), adds a warning that the capture looks cut.
//! * **Repeats.** A key whose field is already set keeps the first value; the repeat goes to
//!   `extra` with a warning. Keys repeated across sections are told apart by section.
//! * **Routing.** See `fields`: by key name outside the closed sections (Work Account, proxy).
//! * **`/debug` traces.** Everything before `DSREGCMD_END_STATUS` goes to `extra` (section
//!   `""`, key `""`) with one warning; the status after the marker is parsed normally.

pub mod decode;
mod diagnostic_data;
mod emit;
mod fields;
mod lines;
mod values;

use std::borrow::Cow;

use dsreg_proto::Snapshot;
use dsreg_proto::v1::WorkAccount;

pub use decode::{Decoded, Encoding, decode};
pub use lines::Lines;

use emit::{Emit, Sink};
use fields::{Blocks, Section, Title};
use lines::{LineKind, classify, indent, normalize_key};

/// Parses the bytes of one `dsregcmd /status` capture. Never panics; see the module doc.
pub fn parse(input: &[u8]) -> Snapshot {
    let decoded = decode(input);
    let mut p = Parser::default();
    for w in decoded.warnings {
        p.sink.warn(0, w);
    }
    p.run(&decoded.text);
    let mut snap = p.snap;
    snap.extra = p.sink.extra;
    snap.warnings = p.sink.warnings;
    snap
}

/// A key/value line held back one line, in case the next line continues its value.
struct Pending<'a> {
    key: &'a str,
    value: Cow<'a, str>,
    line: u32,
}

#[derive(Default)]
struct Parser<'a> {
    snap: Snapshot,
    sink: Sink,
    blocks: Blocks,
    section: Section,
    title: &'a str,
    /// Indentation of the last header box line: dsregcmd's own column 0.
    base_indent: usize,
    pending: Option<Pending<'a>>,
    /// Whether any header or typed key was recognised.
    recognised: bool,
}

impl<'a> Parser<'a> {
    fn run(&mut self, text: &'a str) {
        let mut lines = Lines::new(text);
        // A `/debug` trace only when the marker stands on its own line (a second, cheap pass
        // that runs only when the marker text occurs at all).
        let mut in_trace = text.contains(lines::END_STATUS)
            && Lines::new(text).any(|l| l.trim() == lines::END_STATUS);
        let mut trace_lines = 0usize;
        let mut n = 0u32;
        for raw in lines.by_ref() {
            n = n.saturating_add(1);
            if in_trace {
                let t = raw.trim();
                if t == lines::END_STATUS {
                    in_trace = false;
                    self.sink.warn(
                        n,
                        format!(
                            "input is a dsregcmd /debug trace: {trace_lines} trace lines before \
                             {} kept in extra, the status after it parsed",
                            lines::END_STATUS
                        ),
                    );
                } else if !t.is_empty() {
                    trace_lines += 1;
                    self.sink.extra("", "", t);
                }
                continue;
            }
            self.line(raw, n);
        }
        self.commit();
        if !lines.last_terminated && n > 0 {
            self.sink.warn(
                n,
                "input does not end with a newline; the last line may be cut".into(),
            );
        }
        if !self.recognised && n > 0 {
            self.sink.warn(
                0,
                "no dsregcmd /status section or key recognised in the input".into(),
            );
        }
    }

    fn line(&mut self, raw: &'a str, n: u32) {
        let kind = classify(raw);
        if let LineKind::Keyless(text) = kind
            && self.try_continue(raw, text, n)
        {
            return;
        }
        self.commit();
        match kind {
            LineKind::Blank | LineKind::Decoration | LineKind::Noise | LineKind::EndStatus => {}
            LineKind::Rule => self.base_indent = indent(raw),
            LineKind::Title(title) => {
                self.base_indent = indent(raw);
                self.open_section(title, n);
            }
            LineKind::Footer => {
                self.section = Section::None;
                self.title = "";
            }
            LineKind::KeyValue { key, value } => {
                self.pending = Some(Pending {
                    key,
                    value: Cow::Borrowed(value),
                    line: n,
                });
            }
            LineKind::Keyless(text) => {
                self.sink.extra(self.title, "", text);
                if self.section != Section::None {
                    let title = self.title;
                    self.sink.warn(
                        n,
                        format!("line without a key in section '{title}' kept in extra"),
                    );
                }
            }
        }
    }

    /// Joins a keyless line to the held-back value when [`is_continuation`] says so.
    fn try_continue(&mut self, raw: &str, text: &str, n: u32) -> bool {
        let Some(p) = self.pending.as_mut() else {
            return false;
        };
        if indent(raw) > self.base_indent || !is_continuation(&p.value, text) {
            return false;
        }
        p.value.to_mut().push_str(text);
        let key = p.key;
        self.sink.warn(
            n,
            format!("keyless line joined to the wrapped value of '{key}'"),
        );
        true
    }

    fn open_section(&mut self, title: &'a str, n: u32) {
        self.recognised = true;
        self.title = title;
        let mut buf = [0u8; 64];
        self.section = match fields::title(normalize_key(title, &mut buf)) {
            Some(Title::Known(s)) => {
                create_message(&mut self.snap, s);
                s
            }
            Some(Title::WorkAccount(index)) => {
                self.snap.work_accounts.push(WorkAccount {
                    index,
                    ..Default::default()
                });
                Section::WorkAccount(self.snap.work_accounts.len() - 1)
            }
            None => {
                self.sink.warn(
                    n,
                    format!("unknown section '{title}': its lines are kept in extra"),
                );
                Section::Unknown
            }
        };
        self.blocks.open_diag = None;
    }

    /// Applies the held-back key/value line.
    fn commit(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let mut buf = [0u8; 64];
        let norm = normalize_key(p.key, &mut buf);
        let mut e = Emit {
            sink: &mut self.sink,
            section: self.title,
            key: p.key,
            value: &p.value,
            line: p.line,
            unknown_key: false,
        };
        fields::apply(&mut self.snap, &mut self.blocks, self.section, norm, &mut e);
        self.recognised |= !e.unknown_key;
    }
}

/// Creates the message of a section whose header was printed, so a printed but empty
/// section is present (and empty) in the snapshot.
fn create_message(snap: &mut Snapshot, s: Section) {
    match s {
        Section::DeviceState => {
            snap.device_state.get_or_insert_default();
        }
        Section::DeviceDetails => {
            snap.device_details.get_or_insert_default();
        }
        Section::TenantDetails => {
            snap.tenant_details.get_or_insert_default();
        }
        Section::UserState => {
            snap.user_state.get_or_insert_default();
        }
        Section::SsoState => {
            snap.sso_state.get_or_insert_default();
        }
        Section::Diagnostics => {
            snap.diagnostics.get_or_insert_default();
        }
        Section::Ngc => {
            snap.ngc_prerequisite_check.get_or_insert_default();
        }
        Section::IeProxySystem => {
            snap.ie_proxy_config_for_system_account
                .get_or_insert_default();
        }
        Section::IeProxyUser => {
            snap.ie_proxy_config_for_current_user
                .get_or_insert_default();
        }
        Section::UrlProxy => {
            snap.url_specific_proxy_config.get_or_insert_default();
        }
        Section::WinHttpProxy => {
            snap.win_http_default_proxy_config.get_or_insert_default();
        }
        Section::None | Section::Unknown | Section::WorkAccount(_) => {}
    }
}

/// Whether a keyless line continues the value printed on the line just before it.
///
/// dsregcmd formats each field into a fixed buffer of about 90 columns and prints the rest
/// of a long value on the next line, at its own column 0 (the column of the header boxes —
/// the caller checks the line is not indented past it). A real wrap therefore has:
/// 1. a long value before it (≥ 40 characters: short values never reach the buffer's end);
/// 2. a value cut mid-word: it ends with an ASCII letter (`… script u`);
/// 3. a remainder that starts with an ASCII letter (`sing WPAD. …`) and is more than a
///    couple of characters long.
///
/// A stray poster's line such as the final `x` after `KerbTopLevelNames : ….net:3342` fails
/// 2 and 3 and is kept in `extra` with a warning instead.
fn is_continuation(value: &str, next: &str) -> bool {
    let ends_mid_word = value.as_bytes().last().is_some_and(u8::is_ascii_alphabetic);
    let starts_word = next.as_bytes().first().is_some_and(u8::is_ascii_alphabetic);
    value.len() >= 40 && ends_mid_word && starts_word && next.len() >= 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsreg_proto::TestStatus;

    #[test]
    fn continuation_rule() {
        let pac = "Failed to auto detect the Proxy Auto-Configuration (PAC) script u";
        assert!(is_continuation(pac, "sing WPAD. code: 0x80072f94"));
        let kerb = ".windows.net,.windows.net:1433,.windows.net:3342,.azure.net,.azure.net:3342";
        assert!(!is_continuation(kerb, "x"));
        assert!(!is_continuation("YES", "something else"));
        assert!(!is_continuation(pac, "x"));
    }

    fn lines(text: &str) -> Snapshot {
        parse(text.as_bytes())
    }

    #[test]
    fn repeats_unknown_sections_and_work_accounts() {
        let s = lines(
            "| Device State |\n AzureAdJoined : YES\n AzureAdJoined : NO\n\
             | Work Account 2 |\n NgcSet : YES\n KeyProvider : Soft\n DeviceId : x\n\
             | Mystery Box |\n NgcSet : NO\n",
        );
        assert_eq!(s.device_state.unwrap().azure_ad_joined, Some(true));
        let wa = &s.work_accounts[0];
        assert_eq!((wa.index, wa.ngc_set), (2, Some(true)));
        assert_eq!(wa.key_provider.as_deref(), Some("Soft"));
        // Work Account is closed: DeviceId there is not the device's.
        assert!(s.device_details.is_none());
        assert!(s.user_state.is_none());
        let extra: Vec<_> = s
            .extra
            .iter()
            .map(|x| (&*x.section, &*x.key, &*x.value))
            .collect();
        assert_eq!(
            extra,
            [
                ("Device State", "AzureAdJoined", "NO"),
                ("Work Account 2", "DeviceId", "x"),
                ("Mystery Box", "NgcSet", "NO"),
            ]
        );
        assert_eq!(s.warnings.len(), 2);
        assert!(
            s.warnings[0]
                .message
                .contains("repeated key 'AzureAdJoined'")
        );
        assert!(
            s.warnings[1]
                .message
                .contains("unknown section 'Mystery Box'")
        );
    }

    #[test]
    fn error_and_non_answer_values() {
        let s = lines(
            "WamDefaultSet : ERROR (0xd0020017)\nNgcPreReq : ERROR 0xd0020017\n\
             IsDeviceJoined : UNKNOWN\nPolicyEnabled : MAYBE\nNgcSet : **YES**\n",
        );
        let u = s.user_state.unwrap();
        assert_eq!(
            (u.wam_default_set, u.wam_default_set_error),
            (None, Some(0xd002_0017))
        );
        assert_eq!(u.ngc_set, Some(true));
        let n = s.ngc_prerequisite_check.unwrap();
        assert_eq!(n.ngc_pre_req_error, Some(0xd002_0017));
        assert_eq!((n.is_device_joined, n.policy_enabled), (None, None));
        assert_eq!(s.extra.len(), 2);
        // UNKNOWN is legitimate, MAYBE is not.
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].message.contains("MAYBE"));

        let s = lines("WamDefaultSet : ERROR\nNgcPreReq : ERROR\n");
        assert_eq!(s.user_state.unwrap().wam_default_set_error, None);
        assert_eq!(s.ngc_prerequisite_check.unwrap().ngc_pre_req_error, None);
        assert_eq!((s.extra.len(), s.warnings.len()), (2, 0));
    }

    #[test]
    fn refresh_block_and_bad_test_codes() {
        let s = lines(
            "| SSO State |\nEnterprisePrt : YES\nRefreshPrtDiagnostics : PRESENT\n\
             Attempt Status : 0xc000006d\n| Diagnostic Data |\n\
             DRS Discovery Test : FAIL [ 0x801c0021 / 0xnothex ]\n",
        );
        let sso = s.sso_state.unwrap();
        assert!(sso.acquire_prt_diagnostics.is_none());
        let r = sso.refresh_prt_diagnostics.unwrap();
        assert_eq!(
            (r.prt.as_str(), r.attempt_status),
            ("enterprise", Some(0xc000_006d))
        );
        let t = s.diagnostics.unwrap().tests.unwrap().drs_discovery.unwrap();
        assert_eq!(
            (t.result, t.code, t.sub_code),
            (TestStatus::Fail as i32, None, None)
        );
        assert_eq!(s.warnings.len(), 1);
    }

    #[test]
    fn nothing_recognised_is_reported() {
        let s = lines("hello\nworld\n");
        assert_eq!(s.extra.len(), 2);
        assert_eq!(s.warnings.len(), 1);
        let s = lines("AzureAdJoined : YES");
        assert_eq!(
            s.warnings.len(),
            1,
            "no final newline: the last line may be cut"
        );
    }

    #[test]
    fn end_status_inside_a_value_is_not_a_trace() {
        let s = lines("KeySignTest : DSREGCMD_END_STATUS seen\nAzureAdJoined : YES\n");
        assert_eq!(s.device_state.unwrap().azure_ad_joined, Some(true));
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn total_on_garbage() {
        let s = parse(b"\xff\xfe\x00");
        assert!(s.device_state.is_none());
        let s = parse(b"");
        assert!(s.warnings.is_empty());
    }
}
