//! Builds the plugin workspace in `plugins/` for `wasm32-wasip2` and writes a table of the
//! components for `src/lib.rs` to embed. The nested cargo gets its own target directory
//! (under OUT_DIR) so it never waits on the outer build's lock, and a clean environment so
//! the outer build's flags (meant for the host) do not leak into the guest build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Crate directory under `plugins/` → name in relay.toml (`builtin = "..."`).
const PLUGINS: &[&str] = &["rate-limit", "router", "filter", "tracker"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .parent()
        .expect("bundled/ has a parent")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    // Watched by paths relative to this package, as cargo watches its own sources: two
    // checkouts sharing a target directory share this OUT_DIR, and an absolute path would
    // keep checking the files of whichever checkout ran the script last.
    for dir in ["plugins", "plugin-sdk", "tracking-token"] {
        watch(&root.join(dir), &Path::new("..").join(dir));
    }
    println!("cargo:rerun-if-env-changed=WASMRELAY_PLUGINS_DIR");

    // A packager may hand over components built elsewhere (same file names).
    let components = match std::env::var_os("WASMRELAY_PLUGINS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => build_plugins(&root, &out),
    };

    let mut table = String::from("&[\n");
    for name in PLUGINS {
        let file = components.join(format!("wasmrelay_{}.wasm", name.replace('-', "_")));
        if !file.is_file() {
            panic!("no component at {}", file.display());
        }
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?}) as &[u8]),\n",
            file.display().to_string()
        ));
    }
    table.push(']');
    // Written beside and renamed: a target directory copied with hard links must not see
    // this build's table through a shared file.
    let tmp = out.join("bundled.rs.tmp");
    std::fs::write(&tmp, table).expect("write bundled.rs");
    std::fs::rename(&tmp, out.join("bundled.rs")).expect("rename bundled.rs");
}

fn build_plugins(root: &Path, out: &Path) -> PathBuf {
    let target = out.join("plugins-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(root.join("plugins/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let leaks = key.starts_with("CARGO_ENCODED_RUSTFLAGS")
            || key.starts_with("RUSTFLAGS")
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_BUILD_")
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "CARGO_MAKEFLAGS"
            || key == "MAKEFLAGS";
        if leaks {
            cmd.env_remove(key.as_ref());
        }
    }
    let output = cmd
        .output()
        .expect("cannot run cargo for the bundled plugins");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("wasm32-wasip2") && stderr.contains("target") {
            "\nInstall the target first: rustup target add wasm32-wasip2"
        } else {
            ""
        };
        panic!("building the bundled plugins (plugins/) failed:\n{stderr}{hint}");
    }
    target.join("wasm32-wasip2/release")
}

/// Reruns this script when anything under `dir` changes (cargo compares mtimes per path),
/// naming each path as `relative` (to this package's directory) spells it.
fn watch(dir: &Path, relative: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let (path, relative) = (entry.path(), relative.join(&name));
        if path.is_dir() {
            watch(&path, &relative);
        } else {
            println!("cargo:rerun-if-changed={}", relative.display());
        }
    }
    println!("cargo:rerun-if-changed={}", relative.display());
}
