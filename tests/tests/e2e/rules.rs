//! The Prometheus rules in `dashboards/prometheus/`: `promtool check rules`, `promtool test
//! rules`, and the conventions promtool cannot check (no `job=` selectors, every alert has a
//! summary, a description, a severity and a runbook link whose anchor exists in
//! `dashboards/README.md`). Without `promtool` on PATH these tests fail and name the install
//! command.

use std::collections::BTreeSet;
use std::path::PathBuf;

use dsreg_e2e::process::repo_root;
use dsreg_e2e::prom::promtool;
use serde_yaml::Value;

fn rules_dir() -> PathBuf {
    repo_root().join("dashboards/prometheus")
}

fn rules() -> Value {
    let path = rules_dir().join("dsreg.rules.yml");
    let text = std::fs::read_to_string(&path).expect("read dsreg.rules.yml");
    serde_yaml::from_str(&text).expect("dsreg.rules.yml is YAML")
}

fn all_rules(doc: &Value) -> Vec<&Value> {
    doc["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .collect()
}

#[test]
fn promtool_check_rules_passes() {
    let out = promtool(&["check", "rules", "dsreg.rules.yml"], &rules_dir(), None);
    assert!(out.success, "promtool check rules failed:\n{}", out.text);
    assert!(out.text.contains("SUCCESS"), "{}", out.text);
}

#[test]
fn promtool_unit_tests_pass() {
    let out = promtool(
        &["test", "rules", "dsreg.rules.test.yml"],
        &rules_dir(),
        None,
    );
    assert!(out.success, "promtool test rules failed:\n{}", out.text);
}

#[test]
fn no_rule_selects_on_a_job_name() {
    for rule in all_rules(&rules()) {
        let expr = rule["expr"].as_str().expect("expr");
        let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
        assert!(
            !expr.contains("job=") && !expr.contains("job =") && !expr.contains("job!"),
            "{name}: rules select on metric names and labels only, never on a job name:\n{expr}"
        );
    }
}

/// GitHub-style anchors of the Markdown headings in `text`.
fn anchors(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_is_documented_and_routable() {
    let readme = std::fs::read_to_string(repo_root().join("dashboards/README.md"))
        .expect("dashboards/README.md exists (the runbook)");
    let anchors = anchors(&readme);
    let doc = rules();
    let alerts: Vec<_> = all_rules(&doc)
        .into_iter()
        .filter(|r| r["alert"].is_string())
        .collect();
    assert!(alerts.len() >= 6, "expected the documented alerts");
    for rule in alerts {
        let name = rule["alert"].as_str().unwrap();
        for key in ["summary", "description", "runbook_url"] {
            let v = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(!v.trim().is_empty(), "{name}: annotation {key} missing");
        }
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["page", "ticket"].contains(&severity),
            "{name}: severity must be page or ticket, got {severity:?}"
        );
        let description = rule["annotations"]["description"].as_str().unwrap();
        assert!(
            description.contains("Check next"),
            "{name}: the description says what to check next"
        );
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        let (page, anchor) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} has no #anchor"));
        assert!(
            page.ends_with("dashboards/README.md"),
            "{name}: runbook_url {url} points at dashboards/README.md"
        );
        assert!(
            anchors.contains(anchor),
            "{name}: anchor #{anchor} is not a heading in dashboards/README.md"
        );
        assert_eq!(
            anchor,
            name.to_lowercase(),
            "{name}: one runbook section per alert, named after it"
        );
    }
}

#[test]
fn sync_lag_never_pages() {
    for rule in all_rules(&rules()) {
        let Some(name) = rule["alert"].as_str() else {
            continue;
        };
        let expr = rule["expr"].as_str().unwrap();
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        if severity == "page" && expr.contains("dsreg_registration_failures_total") {
            // Every selector of a paging failure alert excludes device_not_synced.
            let selectors = expr.matches("dsreg_registration_failures_total{").count();
            let excluded = expr.matches("cause!=\"device_not_synced\"").count();
            assert_eq!(
                selectors, excluded,
                "{name}: every failure selector of a paging alert excludes device_not_synced"
            );
        }
        if expr.contains("cause=\"device_not_synced\"") {
            assert_eq!(severity, "ticket", "{name}: sync lag is a ticket at most");
        }
    }
}
