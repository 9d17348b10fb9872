//! What an operator runs: the README's commands, the systemd unit, the log formats.
//!
//! - `readme`: every command in the README's `sh` blocks, run from the repository (or
//!   accounted for, with the reason it is not run here), so that pasting them works.
//! - `service`: `examples/wasmrelay.service` passes `systemd-analyze verify` and its
//!   syscall filter allows what the relay does; `examples/production.toml` passes
//!   `check-config` once its certificate exists.
//! - `logs`: the per-message lines in text and in JSON, followed by queue id through
//!   reception, delivery, a bounce and the bounce's own delivery.

mod logs;
mod readme;
mod service;

use std::path::{Path, PathBuf};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the repository")
        .to_path_buf()
}
