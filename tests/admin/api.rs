//! The admin API through Python's urllib, and `wasmrelay queue` through the running relay.

use serde_json::Value;
use wasmrelay_test_support::{assert_success, test_plugin, wait_for, Downstream};

use super::{start, Setup, TOKEN, WAIT};

fn noop_plugin() -> String {
    format!(
        "[[plugins]]\npath = {:?}\nname = \"noop\"\n",
        test_plugin("noop").display().to_string()
    )
}

/// The queued envelope of `id` as the spool on disk has it, if queued.
fn on_disk(s: &Setup, id: &str) -> Option<wasmrelay::spool::Envelope> {
    s.relay.queued().into_iter().find(|e| e.id.0 == id)
}

fn attempts(s: &Setup, id: &str) -> u32 {
    on_disk(s, id).map_or(0, |e| e.recipients[0].attempts)
}

#[test]
fn token_queue_actions_lists_status_reload_and_metrics() {
    let s = start(&noop_plugin());

    // The token: loopback does not exempt a server that has one.
    let r = s.http("GET", "/api/queue", None, None);
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.json()["error"].as_str().unwrap().contains("bearer token"));
    let r = s.http("GET", "/metrics", None, Some("test-admin-token-0123456780"));
    assert_eq!(r.status, 401, "{r:?}");
    // The page holds no data and loads without it.
    let r = s.http("GET", "/", None, None);
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/html") && r.body.contains("dashboard.js"));

    // One delivered, one bounced by the downstream, two that stay queued (closed port).
    s.smtplib("news@sender.test", "bob@dest.test", "delivered");
    s.smtplib("news@sender.test", "nobody@dest.test", "bounced");
    let held = s.send("ops@sender.test", "carol@slow.test", "to be held");
    let other = s.send("ops@sender.test", "dave@slow.test", "to be bounced");
    // The delivered message, and the DSN of the bounced one to its sender.
    s.sink.wait_for(2, WAIT);
    wait_for("both slow messages deferred once", WAIT, || {
        attempts(&s, &held) >= 1 && attempts(&s, &other) >= 1
    });

    let list = s.api("GET", "/api/queue", None);
    assert_eq!(list["count"], 2, "{list}");
    let ids: Vec<&str> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [held.as_str(), other.as_str()]);
    assert_eq!(list["messages"][0]["from"], "ops@sender.test");
    assert_eq!(list["messages"][0]["pending"], 1);

    let show = s.api("GET", &format!("/api/queue/{held}"), None);
    assert_eq!(
        show["envelope"]["recipients"][0]["address"],
        "carol@slow.test"
    );
    assert!(
        show["headers"]
            .as_str()
            .unwrap()
            .contains("Subject: to be held"),
        "{show}"
    );

    // Hold: recorded on disk, and a flush attempts every message but the held one.
    let r = s.api("POST", &format!("/api/queue/{held}/hold"), None);
    assert_eq!(r["ok"], true);
    assert!(on_disk(&s, &held).unwrap().held);
    assert_eq!(
        s.api("GET", &format!("/api/queue/{held}"), None)["summary"]["held"],
        true
    );
    let (held_before, other_before) = (attempts(&s, &held), attempts(&s, &other));
    s.api("POST", "/api/queue/flush", None);
    wait_for("the flush to attempt the message not held", WAIT, || {
        attempts(&s, &other) > other_before
    });
    s.api("POST", &format!("/api/queue/{held}/flush"), None);
    s.api("POST", "/api/queue/flush", None);
    wait_for("a second flush to attempt it again", WAIT, || {
        attempts(&s, &other) > other_before + 1
    });
    assert_eq!(
        attempts(&s, &held),
        held_before,
        "a held message is not attempted"
    );

    // Release: attempted again on the next flush.
    s.api("POST", &format!("/api/queue/{held}/release"), None);
    assert!(!on_disk(&s, &held).unwrap().held);
    s.api("POST", &format!("/api/queue/{held}/flush"), None);
    wait_for("the released message attempted", WAIT, || {
        attempts(&s, &held) > held_before
    });

    // Bounce and delete.
    s.api("POST", &format!("/api/queue/{other}/bounce"), None);
    wait_for("the bounced message to leave the queue", WAIT, || {
        on_disk(&s, &other).is_none()
    });
    s.sink.wait_for(3, WAIT);
    let r = s.http("DELETE", &format!("/api/queue/{held}"), None, Some(TOKEN));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(on_disk(&s, &held).is_none());
    let r = s.http("GET", &format!("/api/queue/{held}"), None, Some(TOKEN));
    assert_eq!(r.status, 404, "{r:?}");
    let r = s.http(
        "POST",
        &format!("/api/queue/{held}/hold"),
        None,
        Some(TOKEN),
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.json()["error"].as_str().unwrap().contains(&held));
    assert_eq!(s.api("GET", "/api/queue", None)["count"], 0);

    // The suppression list, through the state backend and [[lists]].
    let add = r#"{"member": "someone@example.org"}"#;
    let r = s.api("POST", "/api/lists/suppression/add", Some(add));
    assert_eq!(r["changed"], true);
    assert_eq!(
        s.api("POST", "/api/lists/suppression/add", Some(add))["changed"],
        false
    );
    let members = s.api("GET", "/api/lists/suppression", None);
    let listed: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["member"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["someone@example.org"], "{members}");
    let r = s.api("POST", "/api/lists/suppression/remove", Some(add));
    assert_eq!(r["changed"], true);
    assert_eq!(
        s.api("GET", "/api/lists/suppression", None)["members"],
        Value::Array(vec![])
    );
    let r = s.http("GET", "/api/lists/nope", None, Some(TOKEN));
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("declared: suppression"));
    let r = s.http(
        "POST",
        "/api/lists/suppression/add",
        Some(r#"{"who": 1}"#),
        Some(TOKEN),
    );
    assert_eq!(r.status, 400, "{r:?}");

    // Plugin chain status.
    let status = s.api("GET", "/api/status", None);
    let plugin = &status["plugins"][0];
    assert_eq!(plugin["name"], "noop");
    assert!(
        plugin["source"].as_str().unwrap().ends_with(".wasm"),
        "{plugin}"
    );
    assert!(
        plugin["version"].as_str().unwrap().starts_with("sha256:"),
        "{plugin}"
    );
    assert!(plugin["hooks"]
        .as_array()
        .unwrap()
        .contains(&Value::from("rcpt")));
    assert!(plugin["calls"].as_u64().unwrap() >= 4, "{plugin}");
    assert_eq!(plugin["errors"], 0);
    assert_eq!(status["queue"]["messages"], 0);

    // /metrics in the OpenMetrics text format.
    let r = s.http("GET", "/metrics", None, Some(TOKEN));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(r.body.trim_end().ends_with("# EOF"), "{}", r.body);

    // Reload: the file as it is now; a bad one is refused with its key and changes nothing.
    let r = s.api("POST", "/api/reload", None);
    assert_eq!(r["ok"], true);
    s.relay.wait_log("configuration reloaded", WAIT);
    let good = std::fs::read_to_string(s.relay.config_path()).unwrap();
    s.relay
        .write_config(&good.replace("[admin]", "[limits]\nmax_recipients = 1\n\n[admin]"));
    let r = s.http("POST", "/api/reload", None, Some(TOKEN));
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("limits.max_recipients"),
        "{r:?}"
    );
    s.smtplib(
        "news@sender.test",
        "erin@dest.test",
        "after a refused reload",
    );
    s.sink.wait_subject("after a refused reload", WAIT);
}

#[test]
fn bad_requests_get_json_errors() {
    let s = start("");
    let auth = Some(TOKEN);
    for (method, path, status) in [
        ("PUT", "/api/queue", 405),
        ("PATCH", "/", 405),
        ("POST", "/api/queue", 405),
        ("GET", "/api/reload", 405),
        ("GET", "/api/nothing", 404),
        ("GET", "/etc/passwd", 404),
        ("GET", "/api/queue/not.an.id", 400),
        (
            "POST",
            "/api/queue/01ARZ3NDEKTSV4RRFFQ69G5FA/frobnicate",
            404,
        ),
    ] {
        let r = s.http(method, path, None, auth);
        assert_eq!(r.status, status, "{method} {path}: {r:?}");
        assert!(r.json()["error"].is_string(), "{method} {path}: {r:?}");
    }
    // Bodies are bounded.
    let big = format!(r#"{{"member": "{}"}}"#, "x".repeat(20_000));
    let r = s.http("POST", "/api/lists/suppression/add", Some(&big), auth);
    assert_eq!(r.status, 413, "{r:?}");
    // A web page elsewhere cannot drive the API through a visitor's browser.
    let out = std::process::Command::new("curl")
        .args([
            "--silent",
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
        ])
        .args(["-X", "POST", "-H", "Origin: http://evil.example"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .arg(format!("http://{}/api/queue/flush", s.admin.addr()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    // Too many header fields.
    let mut curl = std::process::Command::new("curl");
    curl.args([
        "--silent",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
    ]);
    for i in 0..100 {
        curl.args(["-H", &format!("X-Filler-{i}: {i}")]);
    }
    let out = curl
        .arg(format!("http://{}/api/stats", s.admin.addr()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "431");
}

#[test]
fn queue_hold_release_delete_use_the_running_relay() {
    let mut s = start("");
    let id = s.send("ops@sender.test", "carol@slow.test", "queued");
    let later = s.send("ops@sender.test", "dave@slow.test", "queued too");
    wait_for("first attempts", WAIT, || {
        attempts(&s, &id) >= 1 && attempts(&s, &later) >= 1
    });
    let run = |s: &Setup, args: &[&str]| {
        let out = s.relay.queue(args);
        assert_success(&format!("queue {args:?}"), &out);
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run(&s, &["hold", &id]).trim(), "ok");
    assert!(on_disk(&s, &id).unwrap().held);
    assert!(s.relay.log().contains("control: hold"), "through the relay");
    assert!(run(&s, &["list"]).contains("1/1 pending, held"));
    assert_eq!(run(&s, &["release", &id]).trim(), "ok");
    assert!(!on_disk(&s, &id).unwrap().held);
    assert_eq!(run(&s, &["delete", &id]).trim(), "ok");
    assert!(on_disk(&s, &id).is_none());
    let out = s.relay.queue(&["hold", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no queued message"));

    // With no relay running, the CLI edits the spool itself.
    assert!(s.relay.terminate().success());
    assert_eq!(run(&s, &["hold", &later]).trim(), format!("hold {later}"));
    assert!(on_disk(&s, &later).unwrap().held);
    assert_eq!(
        run(&s, &["release", &later]).trim(),
        format!("release {later}")
    );
    assert!(!on_disk(&s, &later).unwrap().held);
    run(&s, &["delete", &later]);
    assert!(on_disk(&s, &later).is_none());
}
