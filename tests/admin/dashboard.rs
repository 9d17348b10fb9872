//! The dashboard in headless Chromium: it draws the messages this test sent.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use wasmrelay_test_support::{assert_success, test_plugin, wait_for, Downstream};

use super::{start, target_dir, TOKEN, WAIT};

/// Debian's `chromium` (`.ci/run` installs it).
fn chromium() -> String {
    for name in ["chromium", "chromium-browser"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return name.to_string();
        }
    }
    panic!("chromium is not installed: apt-get install -y chromium (see .ci/run)");
}

#[test]
fn dashboard_draws_what_was_sent() {
    let policy = format!(
        "[[plugins]]\npath = {:?}\nname = \"policy\"\nconfig = {{}}\n",
        test_plugin("policy").display().to_string()
    );
    let s = start(&policy);
    // Three delivered for news.example (the policy plugin limits each sender address to 2
    // a minute), one refused by the downstream (bounced), one refused by the plugin at RCPT,
    // one delivered for shop.example.
    s.smtplib("a@news.example", "ann@dest.test", "one");
    s.smtplib("a@news.example", "bob@dest.test", "two");
    s.smtplib("b@news.example", "cid@dest.test", "three");
    s.smtplib("b@news.example", "nobody@dest.test", "bounces");
    s.smtplib("c@shop.example", "dan@dest.test", "order");
    let refused = wasmrelay_test_support::python(
        r#"
import smtplib, sys
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30) as s:
    s.ehlo("client.test")
    s.mail("c@shop.example")
    print(s.rcpt("blocked@dest.test")[0])
"#,
        &[
            &s.relay.addr().ip().to_string(),
            &s.relay.addr().port().to_string(),
        ],
    );
    assert_success("smtplib rcpt", &refused);
    assert_eq!(String::from_utf8_lossy(&refused.stdout).trim(), "550");
    // Four delivered, and the bounce notice to b@news.example.
    s.sink.wait_for(5, WAIT);
    wait_for("an empty queue", WAIT, || s.relay.queued().is_empty());

    let screenshot = target_dir().join("admin-dashboard.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/admin/cdp.py");
    let url = format!("http://{}/", s.admin.addr());
    let out = Command::new("python3")
        .arg(&script)
        .args([&chromium(), &url, TOKEN])
        .arg(&screenshot)
        .arg("5")
        .output()
        .expect("python3 runs");
    assert_success("the dashboard in headless Chromium", &out);
    let drawn: Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("dashboard screenshot: {}", screenshot.display());

    // The totals it drew: 5 received, 4 delivered plus the DSN, 1 bounced.
    let d = &drawn["dashboard"];
    assert_eq!(
        (&d["received"], &d["delivered"], &d["bounced"]),
        (&Value::from("5"), &Value::from("5"), &Value::from("1")),
        "{drawn}"
    );
    assert_eq!(
        drawn["tiles"]["t-bounce-rate"], "17%",
        "1 of 6 finished: {drawn}"
    );
    // The volume chart sums to the same, and drew a line per series with points.
    let v = &drawn["charts"]["volume"];
    assert_eq!(
        (&v["received"], &v["delivered"], &v["bounced"]),
        (&Value::from("5"), &Value::from("5"), &Value::from("1"))
    );
    let shapes = &drawn["shapes"]["volume"];
    assert!(shapes["paths"].as_u64().unwrap() >= 4, "{shapes}");
    assert!(shapes["circles"].as_u64().unwrap() >= 3, "{shapes}");
    assert!(shapes["width"].as_f64().unwrap() > 300.0, "{shapes}");
    // The donut: a slice for delivered and one for bounced.
    let donut = drawn["donut"].as_array().unwrap();
    assert!(
        donut.contains(&serde_json::json!(["delivered", 5])),
        "{donut:?}"
    );
    assert!(
        donut.contains(&serde_json::json!(["bounced", 1])),
        "{donut:?}"
    );
    // Sender domains: news.example bounced 1 of 4 recipients (25%), shop.example none.
    let domains = drawn["charts"]["domains"]["domains"].as_str().unwrap();
    assert!(
        domains.starts_with("news.example,") && domains.contains("shop.example"),
        "{domains}"
    );
    let bars = drawn["domainBars"].as_array().unwrap();
    assert!(
        bars.contains(&serde_json::json!(["bounce rate", 25])),
        "{bars:?}"
    );
    // Plugins: the policy plugin's calls, with the RCPT refusal among its verdicts.
    let calls = drawn["charts"]["plugins"]["calls"].as_str().unwrap();
    assert!(calls.starts_with("policy:"), "{calls}");
    let verdicts = drawn["pluginBars"].as_array().unwrap();
    assert!(
        verdicts.iter().any(|v| v[0] == "reject" && v[1] == 1),
        "{verdicts:?}"
    );
    assert!(verdicts.iter().any(|v| v[0] == "continue"), "{verdicts:?}");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{}",
        png.len()
    );
}
