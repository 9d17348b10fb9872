//! wasmrelay: an SMTP relay whose policy lives in sandboxed WebAssembly plugins.
//!
//! Layout: [`smtp`] (codec, session, server) receives mail, [`spool`] keeps it durable,
//! [`delivery`] sends it on, `plugins` runs the Wasm policy chain, and [`config`] ties them
//! together from one TOML file.

pub mod config;
pub mod delivery;
pub mod smtp;
pub mod spool;
