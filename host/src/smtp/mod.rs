//! SMTP: the wire codec and DATA reader (no I/O), typed replies, the session state machine
//! (generic over any byte stream) and the tokio/rustls server that feeds it sockets.

pub mod codec;
pub mod data;
pub mod reply;
pub mod server;
pub mod session;
pub mod stream;
pub mod tls;
