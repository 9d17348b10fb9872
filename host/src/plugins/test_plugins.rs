//! Builds the test plugin components in `tests/plugins` once per process and finds them.
//! Used by unit tests, integration tests and the benchmark; not part of the relay's API, and
//! compiled only for them (`cfg(test)` or the `test-util` feature).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root (the workspace that holds `host/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Cargo's target directory, shared by the host and the guest builds.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Path of the component of test plugin `name` (`policy`, `loop`, `wrong-world` ...; or
/// `example`, the crate in `examples/rust-plugin`), building all of them with
/// `cargo build --release --target wasm32-wasip2` on first use.
pub fn component(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(build)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    let file = match name {
        "example" => "example_rust_plugin.wasm".to_string(),
        _ => format!("test_plugin_{}.wasm", name.replace('-', "_")),
    };
    let path = dir.join(file);
    assert!(path.is_file(), "no test plugin at {}", path.display());
    path
}

/// Every crate of the test plugin workspace, by component file stem.
const PLUGINS: &[&str] = &[
    "policy",
    "noop",
    "loop",
    "membomb",
    "trap",
    "huge",
    "capspam",
    "badreply",
    "wrong_world",
    "wrong_version",
    "list_writer",
    "list_reader",
    "greedy",
    "quota",
    "auth_echo",
    "mime_rewrite",
    "tracker_lite",
    "session_value",
    "counter_hold",
    "message_charge",
    "listed_rcpt",
    "frozen_0_2_0",
    "wrong_signature",
    "facts_echo",
];

/// Newest modification time of the files under `dir` (recursively, skipping `target`).
fn newest(dir: &Path) -> std::time::SystemTime {
    let mut latest = std::time::SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return latest;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            if path.ends_with("target") {
                continue;
            }
            newest(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(latest)
        };
        latest = latest.max(time);
    }
    latest
}

/// Whether every component is newer than its sources and the SDK: the shared target
/// directory's lock is often held by other builds, so a fresh set is not rebuilt.
fn up_to_date(out: &Path) -> bool {
    let root = repo_root();
    let sources = newest(&root.join("tests/plugins"))
        .max(newest(&root.join("plugin-sdk")))
        .max(newest(&root.join("examples/rust-plugin")));
    let files = PLUGINS
        .iter()
        .map(|p| format!("test_plugin_{p}.wasm"))
        .chain(["example_rust_plugin.wasm".to_string()]);
    files.into_iter().all(|f| {
        std::fs::metadata(out.join(f))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= sources)
    })
}

fn build() -> Result<PathBuf, String> {
    let target = target_dir();
    let out_dir = target.join("wasm32-wasip2/release");
    if up_to_date(&out_dir) {
        return Ok(out_dir);
    }
    for manifest in [
        "tests/plugins/Cargo.toml",
        "examples/rust-plugin/Cargo.toml",
    ] {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
            .arg("--manifest-path")
            .arg(repo_root().join(manifest))
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building {manifest} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(out_dir)
}
