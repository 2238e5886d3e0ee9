//! The deployment files agree with each other and with the collector: ports, mounted paths,
//! the Grafana datasource uid, dashboard hygiene (no `__inputs`, every target on
//! `${datasource}`), and the example config loads through the collector's own loader.
//! Docker is not needed: these are file checks.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use dsreg_collector::config::{Args, Config};
use dsreg_e2e::process::repo_root;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

fn deploy() -> PathBuf {
    repo_root().join("deploy")
}

fn yaml(path: &Path) -> Yaml {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn compose() -> Yaml {
    yaml(&deploy().join("compose.yaml"))
}

fn strings(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| match x {
                    Yaml::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `host_path:container_path[:mode]` volume entries of a compose service, host paths resolved
/// against deploy/ (named volumes kept as their name).
fn mounts(service: &Yaml) -> Vec<(PathBuf, String)> {
    strings(&service["volumes"])
        .into_iter()
        .map(|v| {
            let mut parts = v.split(':');
            let host = parts.next().unwrap().to_string();
            let container = parts.next().expect("host:container").to_string();
            let host = if host.starts_with('.') || host.starts_with('/') {
                normalize(&deploy().join(host))
            } else {
                PathBuf::from(host)
            };
            (host, container)
        })
        .collect()
}

/// `a/b/../c` → `a/c` without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The value after `flag` in an argument list (`--flag value` or `--flag=value`).
fn flag(args: &[String], flag: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{flag}=")).map(str::to_string)
        }
    })
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().expect("port")
}

fn dashboards() -> Vec<(PathBuf, Json)> {
    let dir = repo_root().join("dashboards/grafana");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("dashboards/grafana")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p, json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 3,
        "fleet overview, failures and device drill-down"
    );
    out
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    let mut stack: Vec<&Json> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        if let Some(nested) = p["panels"].as_array() {
            stack.extend(nested);
        }
        out.push(p);
    }
    out
}

#[test]
fn ports_agree_with_the_collector_defaults() {
    let defaults = Config::default();
    let (grpc, http) = (defaults.grpc_listen.port(), defaults.http_listen.port());
    assert_eq!((grpc, http), (50051, 9184), "the documented default ports");

    let compose = compose();
    let collector = &compose["services"]["collector"];
    let cmd = strings(&collector["command"]);
    assert_eq!(
        flag(&cmd, "--grpc-listen").as_deref(),
        Some("0.0.0.0:50051")
    );
    assert_eq!(flag(&cmd, "--http-listen").as_deref(), Some("0.0.0.0:9184"));
    assert!(
        cmd.iter().any(|a| a == "--insecure"),
        "lab compose runs --insecure"
    );
    let published: BTreeSet<u16> = strings(&collector["ports"])
        .iter()
        .map(|p| port_of(p))
        .collect();
    assert_eq!(published, BTreeSet::from([grpc, http]));

    // The db lives in the named volume.
    let db = flag(&cmd, "--db").expect("--db");
    assert!(
        mounts(collector)
            .iter()
            .any(|(host, container)| host.is_relative() && db.starts_with(&format!("{container}/"))),
        "--db {db} is inside a named volume"
    );

    // Prometheus scrapes the collector service on its HTTP port.
    let prom = yaml(&deploy().join("prometheus.yml"));
    let targets: Vec<String> = prom["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|j| j["static_configs"].as_sequence().unwrap().iter())
        .flat_map(|s| strings(&s["targets"]))
        .collect();
    assert!(
        targets.contains(&format!("collector:{http}")),
        "prometheus.yml scrapes collector:{http}, has {targets:?}"
    );

    // The image exposes both ports.
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let expose: BTreeSet<u16> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect();
    assert_eq!(expose, BTreeSet::from([grpc, http]));
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root")),
        "the runtime image runs as a non-root user"
    );
    let build = &collector["build"];
    let context = normalize(&deploy().join(build["context"].as_str().unwrap()));
    assert_eq!(
        context,
        normalize(&repo_root()),
        "build context is the repo root"
    );
    assert!(
        context
            .join(build["dockerfile"].as_str().unwrap())
            .is_file(),
        "compose's dockerfile exists"
    );
}

#[test]
fn prometheus_config_and_rules_are_mounted_where_they_are_read() {
    let compose = compose();
    let service = &compose["services"]["prometheus"];
    let mounts = mounts(service);
    let args = strings(&service["command"]);
    let config_in_container = flag(&args, "--config.file").expect("--config.file");
    let config_host = mounts
        .iter()
        .find(|(_, c)| *c == config_in_container)
        .map(|(h, _)| h.clone())
        .unwrap_or_else(|| panic!("{config_in_container} is not mounted"));
    assert_eq!(config_host, deploy().join("prometheus.yml"));

    let prom = yaml(&config_host);
    let rule_files = strings(&prom["rule_files"]);
    assert!(!rule_files.is_empty(), "prometheus.yml loads the rules");
    let rules = repo_root().join("dashboards/prometheus/dsreg.rules.yml");
    for rf in &rule_files {
        let host = mounts
            .iter()
            .find(|(_, c)| c == rf)
            .map(|(h, _)| h.clone())
            .unwrap_or_else(|| panic!("rule file {rf} is not mounted into the container"));
        assert_eq!(host, rules, "{rf} is dashboards/prometheus/dsreg.rules.yml");
        assert!(host.is_file());
    }
    // The spike alert looks a day back: retention must be longer.
    let retention = flag(&args, "--storage.tsdb.retention.time").unwrap_or_else(|| "15d".into());
    assert!(
        retention.ends_with('d') && retention != "1d",
        "retention {retention} > 1d"
    );
}

#[test]
fn grafana_provisioning_matches_the_dashboards() {
    let compose = compose();
    let grafana = &compose["services"]["grafana"];
    let mounts = mounts(grafana);
    let provisioning = mounts
        .iter()
        .find(|(_, c)| c == "/etc/grafana/provisioning")
        .map(|(h, _)| h.clone())
        .expect("provisioning mounted at /etc/grafana/provisioning");
    assert_eq!(provisioning, deploy().join("grafana/provisioning"));

    // Dashboards: the provider's path is where dashboards/grafana is mounted.
    let providers = yaml(&provisioning.join("dashboards/dsreg.yaml"));
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    let path = provider["options"]["path"].as_str().expect("options.path");
    let host = mounts
        .iter()
        .find(|(_, c)| c == path)
        .map(|(h, _)| h.clone())
        .unwrap_or_else(|| panic!("provider path {path} is not mounted"));
    assert_eq!(host, repo_root().join("dashboards/grafana"));
    for (file, _) in dashboards() {
        assert!(host.join(file.file_name().unwrap()).is_file());
    }
    if let Some(home) = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].as_str()
    {
        let rel = home
            .strip_prefix(&format!("{path}/"))
            .unwrap_or_else(|| panic!("home dashboard {home} is in {path}"));
        assert!(host.join(rel).is_file(), "home dashboard {home} exists");
    }

    // Datasource: uid and name are what the dashboards' `datasource` variable defaults to,
    // and the URL is the Prometheus service of the compose file.
    let ds = yaml(&provisioning.join("datasources/dsreg.yaml"));
    let ds = &ds["datasources"][0];
    assert_eq!(ds["type"].as_str(), Some("prometheus"));
    let (uid, name) = (ds["uid"].as_str().unwrap(), ds["name"].as_str().unwrap());
    let prom_port = port_of(
        &flag(
            &strings(&compose["services"]["prometheus"]["command"]),
            "--web.listen-address",
        )
        .unwrap_or_else(|| "0.0.0.0:9090".into()),
    );
    assert_eq!(
        ds["url"].as_str(),
        Some(format!("http://prometheus:{prom_port}").as_str())
    );
    for (file, d) in dashboards() {
        let vars = d["templating"]["list"].as_array().unwrap();
        let var = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{}: no datasource variable", file.display()));
        assert_eq!(var["type"], "datasource");
        assert_eq!(var["query"], "prometheus");
        let current = &var["current"];
        assert!(
            current["value"] == uid || current["value"] == name,
            "{}: datasource default {current} is not the provisioned {name}/{uid}",
            file.display()
        );
    }
}

#[test]
fn dashboards_are_provisionable() {
    let mut uids = BTreeSet::new();
    for (file, d) in dashboards() {
        let f = file.display();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("__inputs"),
            "{f}: no __inputs in provisioned dashboards"
        );
        assert!(
            !text.contains("${DS_"),
            "{f}: no import-time ${{DS_…}} placeholders"
        );
        let uid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{f}: stable uid"));
        assert!(uid.starts_with("dsreg-"), "{f}: uid {uid}");
        assert!(uids.insert(uid.to_string()), "{f}: duplicate uid {uid}");
        let schema = d["schemaVersion"].as_u64().unwrap();
        assert!((36..=41).contains(&schema), "{f}: schemaVersion {schema}");
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(
            vars.contains(&"collector_url"),
            "{f}: collector_url variable for links"
        );

        let mut ids = BTreeSet::new();
        let mut targets = 0;
        for panel in panels(&d) {
            let title = panel["title"].as_str().unwrap_or("?");
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{f}: duplicate panel id"
            );
            if panel["type"] == "row" || panel["type"] == "text" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{f}: panel {title} uses ${{datasource}}"
            );
            for t in panel["targets"].as_array().unwrap() {
                targets += 1;
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{f}: a target of {title} uses ${{datasource}}"
                );
                assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
            }
        }
        assert!(targets > 0, "{f}: has queries");
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                assert_eq!(
                    v["datasource"]["uid"], "${datasource}",
                    "{f}: variable {}",
                    v["name"]
                );
            }
        }
    }
    assert_eq!(
        uids,
        BTreeSet::from([
            "dsreg-device-drilldown".to_string(),
            "dsreg-failures".to_string(),
            "dsreg-fleet-overview".to_string()
        ]),
        "stable uids (links and bookmarks depend on them)"
    );
}

#[test]
fn example_config_loads_through_the_collector() {
    let path = deploy().join("collector.example.toml");
    let args = Args {
        config: Some(path.clone()),
        ..Args::default()
    };
    // The loader refuses unknown keys and bad values, so this checks every key name.
    let cfg = Config::load(&args, &HashMap::new())
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
    let defaults = Config::default();
    assert_eq!(cfg.grpc_listen, defaults.grpc_listen);
    assert_eq!(cfg.http_listen, defaults.http_listen);
    assert!(!cfg.insecure, "the example is safe by default");

    // The systemd unit reads this file from its ConfigurationDirectory and keeps the db in its
    // StateDirectory.
    let unit = std::fs::read_to_string(deploy().join("systemd/dsreg-collector.service")).unwrap();
    let directive = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("unit has {key}="))
            .to_string()
    };
    let exec: Vec<String> = directive("ExecStart")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let config_path = flag(&exec, "--config").expect("ExecStart --config");
    assert_eq!(
        config_path,
        format!(
            "/etc/{}/collector.toml",
            directive("ConfigurationDirectory")
        )
    );
    assert!(
        cfg.db
            .starts_with(format!("/var/lib/{}", directive("StateDirectory"))),
        "db {} is in the StateDirectory",
        cfg.db.display()
    );
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DynamicUser=yes",
    ] {
        assert!(unit.lines().any(|l| l == hardening), "unit has {hardening}");
    }
}

/// The `--flags` of a command line, in order.
fn cli_flags(line: &str) -> Vec<String> {
    line.split(|c: char| c.is_whitespace() || c == '"' || c == '`')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect()
}

/// The PowerShell line assigning `$variable = …` in `script`.
fn ps_assignment<'a>(script: &'a str, variable: &str) -> &'a str {
    script
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("${variable} =")))
        .unwrap_or_else(|| panic!("Install-DsregAgent.ps1 assigns ${variable}"))
}

#[test]
fn windows_installer_runs_the_agent_with_its_real_flags() {
    let script = std::fs::read_to_string(deploy().join("windows/Install-DsregAgent.ps1")).unwrap();
    let uninstall =
        std::fs::read_to_string(deploy().join("windows/Uninstall-DsregAgent.ps1")).unwrap();
    let words = |help: &str| -> BTreeSet<String> {
        help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map(str::to_string)
            .collect()
    };
    let run_help = words(&dsreg_e2e::agent::agent_help("run"));
    let send_help = words(&dsreg_e2e::agent::agent_help("send"));

    let service = ps_assignment(&script, "serviceCommandLine");
    let task = ps_assignment(&script, "runArguments");
    let user = ps_assignment(&script, "userArguments");
    assert!(
        user.contains("\"send --user-context "),
        "the logon task runs `send --user-context`: {user}"
    );
    assert!(
        script.contains("New-ScheduledTaskAction -Execute $exe -Argument $userArguments"),
        "the logon task uses $userArguments"
    );
    assert!(
        service.contains("\" run --service "),
        "the service runs `run --service`: {service}"
    );
    assert!(
        task.contains("\"run --config "),
        "the task runs `run`: {task}"
    );
    for (line, help, sub) in [
        (service, &run_help, "run"),
        (task, &run_help, "run"),
        (user, &send_help, "send"),
    ] {
        let flags = cli_flags(line);
        assert!(!flags.is_empty(), "{line}");
        for flag in flags {
            assert!(
                help.contains(&flag),
                "`dsreg-agent {sub} --help` has no {flag} (used in: {line})"
            );
        }
    }
    for flag in ["--config", "--log-file", "--user-inbox"] {
        assert!(cli_flags(service).iter().any(|f| f == flag), "{service}");
        assert!(cli_flags(task).iter().any(|f| f == flag), "{task}");
    }
    // The user run hands its report to the SYSTEM agent through the same inbox, and carries no
    // collector credentials (users cannot read them).
    assert!(
        service.contains("--user-inbox `\"$userInbox`\"")
            && task.contains("--user-inbox `\"$userInbox`\"")
            && user.contains("--user-inbox `\"$userInbox`\""),
        "one inbox for both sides"
    );
    for secret in ["--token-file", "--client-key", "--config", "--collector"] {
        assert!(
            !user.contains(secret),
            "the logon task passes no {secret}: {user}"
        );
    }
    assert!(
        script.contains("'*S-1-5-32-545:(WD)'"),
        "users may only add files to the inbox"
    );

    // The service name is the one the agent connects to the service control manager as, and
    // the uninstaller stops and deletes it (and the tasks).
    let name = dsreg_agent::scm::SERVICE_NAME;
    assert!(
        script.contains(&format!("$serviceName = '{name}'")),
        "installer service name is {name}"
    );
    assert!(
        uninstall.contains(&format!("$serviceName = '{name}'")),
        "uninstaller service name is {name}"
    );
    for needle in [
        "Stop-Service -Name $serviceName",
        "sc.exe delete $serviceName",
        "Unregister-ScheduledTask",
    ] {
        assert!(uninstall.contains(needle), "uninstaller has {needle}");
    }
    for needle in [
        "start= delayed-auto",
        "sc.exe @args",
        "failure $serviceName",
        "[ValidateSet('Service', 'ScheduledTask')] [string] $Mode = 'Service'",
    ] {
        assert!(script.contains(needle), "installer has {needle}");
    }
}
