//! SMTP: the session state machine (generic over any byte stream) and the tokio/rustls server
//! that feeds it sockets. The wire format itself (command parser, DATA reader, typed replies)
//! is the `wasmrelay_codec` crate, which does no I/O.

pub mod auth_guard;
pub mod incoming;
pub mod server;
pub mod session;
pub mod stream;
pub mod tls;

// The codec's modules under the paths they had inside this crate, so code written against
// `crate::smtp::{codec, data, reply}` keeps compiling. New code imports `wasmrelay_codec`.
pub use wasmrelay_codec::command as codec;
pub use wasmrelay_codec::{data, reply};
