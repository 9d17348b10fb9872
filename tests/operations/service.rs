//! `examples/wasmrelay.service` and `examples/production.toml`, as an operator installs them.
//!
//! Checks that need a tool this machine may lack (`systemd-analyze`, `strace`) print
//! `SKIPPED: <why>` and return; `.ci/run` installs both.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use wasmrelay_test_support::relay::{loopback_config, write_config};
use wasmrelay_test_support::{
    binary, smtplib_send, test_certificate, test_plugin, wait_for, Aiosmtpd, Downstream,
};

use super::repo;

const UNIT: &str = "examples/wasmrelay.service";
const PRODUCTION: &str = "examples/production.toml";
const INSTALLED: &str = "/usr/local/bin/wasmrelay";

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether `tool` runs here; if not, says so on the test's output.
fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED {test}: `{tool}` is not installed (.ci/run installs it)");
    }
    ok
}

/// Values of `key=` lines in the unit, in order.
fn directives<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if !have("systemd-analyze", "unit_passes_systemd_analyze_verify") {
        return;
    }
    let unit = read(UNIT);
    assert!(unit.contains(INSTALLED));
    // verify checks that every Exec command exists: point them at this build's binary.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasmrelay.service");
    std::fs::write(&path, unit.replace(INSTALLED, binary().to_str().unwrap())).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // An unknown or misspelt directive is only a warning: any output is a failure here.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

#[test]
fn unit_and_production_config_agree_on_the_layout() {
    let unit = read(UNIT);
    let config: toml::Table = read(PRODUCTION).parse().unwrap();
    let config_path = "/etc/wasmrelay/relay.toml";
    for key in ["ExecStartPre", "ExecStart"] {
        let cmd = directives(&unit, key);
        assert_eq!(cmd.len(), 1, "{key}");
        assert!(cmd[0].starts_with(INSTALLED), "{key}={}", cmd[0]);
        assert!(
            cmd[0].ends_with(&format!("--config {config_path}")),
            "{key}"
        );
    }
    assert!(directives(&unit, "ExecStartPre")[0].contains(" check-config "));
    assert!(directives(&unit, "ExecStart")[0].contains(" serve "));
    let reload = directives(&unit, "ExecReload");
    assert_eq!(reload.last(), Some(&"/bin/kill -HUP $MAINPID"));
    assert_eq!(directives(&unit, "User"), ["wasmrelay"]);
    assert_eq!(
        directives(&unit, "AmbientCapabilities"),
        ["CAP_NET_BIND_SERVICE"]
    );
    for on in ["NoNewPrivileges", "PrivateTmp", "ProtectHome"] {
        assert_eq!(directives(&unit, on), ["yes"], "{on}");
    }
    assert_eq!(directives(&unit, "ProtectSystem"), ["strict"]);
    // Everything the relay writes is writable under ProtectSystem=strict.
    let spool = config["spool"]["dir"].as_str().unwrap();
    assert_eq!(directives(&unit, "ReadWritePaths"), [spool]);
    let cache = config["plugin_runtime"]["cache_dir"].as_str().unwrap();
    let state = directives(&unit, "StateDirectory");
    assert!(
        cache.starts_with(&format!("/var/lib/{}/", state[0])),
        "{cache}"
    );
    let events = config["events"]["path"].as_str().unwrap();
    let logs = directives(&unit, "LogsDirectory");
    assert!(
        events.starts_with(&format!("/var/log/{}/", logs[0])),
        "{events}"
    );
    let ports: BTreeSet<String> = config["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["address"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ports, ["25", "465", "587"].map(String::from).into());
}

/// `examples/production.toml` with its /etc and /var paths moved under `root`.
fn production_under(root: &Path) -> String {
    read(PRODUCTION)
        .replace("/etc/wasmrelay/", &format!("{}/etc/", root.display()))
        .replace("/var/spool/wasmrelay", &format!("{}/spool", root.display()))
        .replace("/var/lib/wasmrelay/", &format!("{}/lib/", root.display()))
        .replace("/var/log/wasmrelay/", &format!("{}/log/", root.display()))
}

fn check_config(path: &Path) -> (bool, String) {
    let out = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn production_config_checks_once_its_certificate_exists() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let config = root.join("relay.toml");
    write_config(&config, &production_under(root));
    // ExecStartPre stops a start without the certificate, naming the keys.
    let (ok, text) = check_config(&config);
    assert!(!ok, "{text}");
    for key in [
        "listeners[0].tls_cert",
        "listeners[1].tls_key",
        "listeners[2].tls_cert",
    ] {
        assert!(
            text.contains(&format!("{key}: no such file")),
            "{key}: {text}"
        );
    }
    std::fs::create_dir_all(root.join("etc/tls")).unwrap();
    let (cert, key) = test_certificate(&root.join("etc/tls"));
    std::fs::rename(cert, root.join("etc/tls/fullchain.pem")).unwrap();
    std::fs::rename(key, root.join("etc/tls/privkey.pem")).unwrap();
    let (ok, text) = check_config(&config);
    assert!(ok, "{text}");
    assert!(text.contains(": OK"), "{text}");
}

/// The syscalls a systemd syscall-filter set stands for, nested sets expanded.
fn syscall_set(name: &str) -> BTreeSet<String> {
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze syscall-filter {name}"
    );
    let mut set = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let word = line.trim();
        if word.is_empty() || word.starts_with('#') {
            continue;
        }
        if word.starts_with('@') {
            set.extend(syscall_set(word));
        } else {
            set.insert(word.to_string());
        }
    }
    set
}

/// The unit's `SystemCallFilter=`: allowed sets, then `~` lines that take sets away.
fn allowed_syscalls(unit: &str) -> BTreeSet<String> {
    let mut allowed = BTreeSet::new();
    for value in directives(unit, "SystemCallFilter") {
        match value.strip_prefix('~') {
            Some(denied) => {
                for name in denied.split_whitespace() {
                    for s in syscall_set(name) {
                        allowed.remove(&s);
                    }
                }
            }
            None => {
                for name in value.split_whitespace() {
                    allowed.extend(syscall_set(name));
                }
            }
        }
    }
    allowed
}

#[test]
fn units_syscall_filter_allows_what_the_relay_does() {
    let test = "units_syscall_filter_allows_what_the_relay_does";
    if !have("systemd-analyze", test) || !have("strace", test) {
        return;
    }
    let allowed = allowed_syscalls(&read(UNIT));
    assert!(allowed.contains("read") && !allowed.contains("reboot"));

    // A relay with a plugin (compiled and run by wasmtime) receives and delivers a message
    // under strace, then shuts down.
    let dir = tempfile::tempdir().unwrap();
    let sink = Aiosmtpd::start();
    let plugin = format!(
        "[[plugins]]\npath = \"{}\"\n",
        test_plugin("noop").display()
    );
    let config = dir.path().join("relay.toml");
    write_config(&config, &loopback_config(sink.addr(), &plugin));
    let trace = dir.path().join("strace.txt");
    let log_path = dir.path().join("relay.log");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-c", "-o"])
        .arg(&trace)
        .arg(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env("WASMRELAY_LOG", "info")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("strace");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut addr = None;
    wait_for("the relay to listen", Duration::from_secs(120), || {
        addr = log()
            .split_whitespace()
            .find_map(|w| w.strip_prefix("address=")?.parse().ok());
        addr.is_some()
    });
    smtplib_send(
        addr.unwrap(),
        "app@example.org",
        &["user@example.com"],
        "Subject: t\r\n\r\nx\r\n",
    );
    sink.wait_for(1, Duration::from_secs(60));
    // The relay is strace's child.
    let children = format!("/proc/{0}/task/{0}/children", strace.id());
    let pid: i32 = std::fs::read_to_string(children)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut status = None;
    wait_for("the relay to stop", Duration::from_secs(60), || {
        status = strace.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "{}", log());

    // `% time seconds usecs/call calls [errors] syscall`, then a `total` row.
    let summary = std::fs::read_to_string(&trace).unwrap();
    let used: BTreeSet<&str> = summary
        .lines()
        .filter(|l| l.starts_with(' ') || l.starts_with(char::is_numeric))
        .filter_map(|l| l.split_whitespace().last())
        .filter(|name| *name != "total")
        .collect();
    assert!(used.contains("mprotect") && used.len() > 20, "{summary}");
    let refused: Vec<&&str> = used.iter().filter(|s| !allowed.contains(**s)).collect();
    assert!(
        refused.is_empty(),
        "SystemCallFilter would refuse {refused:?} (EPERM):\n{summary}"
    );
}
