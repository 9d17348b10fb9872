//! The policy plugins that ship inside the relay binary, by the name relay.toml gives them
//! (`[[plugins]] builtin = "rate-limit"`). Their sources are the crates in `plugins/`.

/// (name, component bytes) for every bundled plugin.
pub const PLUGINS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The component of the bundled plugin `name`.
pub fn component(name: &str) -> Option<&'static [u8]> {
    PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// The names of the bundled plugins, for error messages.
pub fn names() -> impl Iterator<Item = &'static str> {
    PLUGINS.iter().map(|(n, _)| *n)
}
