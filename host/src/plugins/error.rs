//! Plugin errors: refused at load (config, file, compile, interface) or failed at run time
//! (trap, limits, malformed return), the latter always turned into the `on_error` verdict.

use std::path::PathBuf;

/// Why the plugin set could not be loaded. The relay keeps its previous set (on reload) or
/// refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum PluginLoadError {
    #[error("plugin runtime: {0}")]
    Engine(String),
    #[error("cannot read plugin {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("cannot compile plugin {0}: {1}")]
    Compile(PathBuf, String),
    #[error("plugin {0} refused: {1}")]
    Interface(PathBuf, String),
    #[error("plugin {name}: {message}")]
    Init { name: String, message: String },
}

/// How a hook call failed. Every kind poisons the instance and applies `on_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureKind {
    #[error("trap: {0}")]
    Trap(String),
    #[error("CPU budget exhausted")]
    Cpu,
    #[error("wall-time limit reached")]
    WallTime,
    #[error("memory limit exceeded")]
    Memory,
    #[error("capability call budget exhausted")]
    Capabilities,
    #[error("malformed return: {0}")]
    Malformed(String),
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
}
