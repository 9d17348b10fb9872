//! The bundled policy plugins end to end: the relay binary with `builtin` plugins, real
//! SMTP clients, real downstream servers on loopback.

mod filter;
mod rate_limit;
mod router;
mod tracker;
