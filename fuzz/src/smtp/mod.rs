//! The relay's `smtp` codec modules, by path, so the targets fuzz the very same source.

#[path = "../../../host/src/smtp/reply.rs"]
pub mod reply;

#[path = "../../../host/src/smtp/codec/mod.rs"]
pub mod codec;

#[path = "../../../host/src/smtp/data/mod.rs"]
pub mod data;
