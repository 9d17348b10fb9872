//! The compile cache across relay starts: the first start compiles the Python component and
//! writes the compiled code to `cache_dir`; the next start of the relay loads it from there
//! and serves with it.

use super::*;

/// The compiled artifacts in `dir`.
fn artifacts(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect()
}

#[test]
fn a_restart_loads_compiled_code_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let sink = Aiosmtpd::start();
    let sink_addr = SocketAddr::from(([127, 0, 0, 1], sink.port()));
    let entry = plugin(
        &build::greylisting(),
        "greylisting",
        "tempfail",
        "instances = \"pooled\"\nconfig = { delay = \"1h\" }",
    );
    let config = loopback_config(sink_addr, &entry).replace(
        "cache_dir = \"cache\"",
        &format!("cache_dir = {:?}", cache.display().to_string()),
    );
    assert!(config.contains("compiled"), "{config}");

    let mut first = Relay::start(dir.path(), &config);
    first.wait_log("plugin loaded", WAIT);
    assert!(first.log().contains("outcome=Miss"), "{}", first.log());
    let compiled = artifacts(&cache);
    assert_eq!(compiled.len(), 1, "one compiled component: {compiled:?}");
    first.terminate();

    let mut second = Relay::start(dir.path(), &config);
    second.wait_log("plugin loaded", WAIT);
    let log = second.log();
    assert!(log.contains("outcome=Hit"), "{log}");
    assert!(!log.contains("outcome=Miss"), "{log}");
    assert_eq!(artifacts(&cache), compiled, "nothing compiled again");
    // And the cached code runs: a first attempt is greylisted.
    let (ok, out) = swaks_send(second.addr(), "a@example.org", "b@example.com", &[]);
    assert!(!ok && out.contains("451 4.7.1"), "{out}");
    assert!(second.is_running());
}
