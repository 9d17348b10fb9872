//! The bundled plugins' own unit tests (config parsing, keys, matchers, encodings), run on the
//! build machine. The plugins are a workspace of their own, built for wasm32-wasip2, so
//! `cargo test --workspace` reaches their tests only through this one.

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn the_bundled_plugins_pass_their_own_unit_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bundled/ has a parent");
    // A directory of their own under the shared target directory: a native build of the
    // plugin crates must neither wait on nor replace the outer build's artifacts.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugins-native");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["test", "--quiet", "--manifest-path"])
        .arg(root.join("plugins/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cannot run cargo for the bundled plugins' tests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The runs that passed, as the harness counts them: a crate whose tests were dropped
    // (a module no longer compiled in) would show as fewer.
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        passed >= 30,
        "only {passed} plugin unit tests ran:\n{stdout}"
    );
}
