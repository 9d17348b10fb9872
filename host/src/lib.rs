//! wasmrelay: an SMTP relay whose policy lives in sandboxed WebAssembly plugins.
//!
//! Layout: [`smtp`] (codec, session, server) receives mail, [`spool`] keeps it durable,
//! [`delivery`] sends it on, [`msgauth`] checks SPF/DKIM/DMARC of what arrives, [`plugins`]
//! runs the Wasm policy chain on [`state`] (rates, quotas, kv, lists), [`events`] logs every
//! step of a message's life as JSON lines, [`tracking`] serves the `tracker` plugin's links
//! over HTTP, [`admin`] serves the admin API, the dashboard and the metrics, [`config`] ties
//! them together from one TOML file, and [`relay`] wires them into a running server.

pub mod admin;
pub mod cli;
pub mod config;
pub mod control;
pub mod delivery;
pub mod events;
pub mod feedback;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod msgauth;
pub mod plugins;
pub mod relay;
pub mod sink;
pub mod smtp;
pub mod spool;
pub mod state;
pub mod telemetry;
pub mod tracking;
pub mod webhooks;
