//! `[events]`: the JSON-lines event log (one line per message event and per plugin `emit`).
//!
//! ```toml
//! [events]
//! path = "/var/log/wasmrelay/events.jsonl"   # empty (the default) = no event log
//! max_size = "100MB"                          # rotate when the file would grow past this
//! keep = 5                                    # events.jsonl.1 ... events.jsonl.5
//! ```
//!
//! Like `[delivery]`, the section is read at start; a change needs a restart.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// Where the event log goes and how much of it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// The log file, relative to the config file; empty turns the event log off.
    pub path: PathBuf,
    /// Rotate before the file would grow past this many bytes (`"100MB"`, `"64KiB"` or a
    /// number of bytes).
    pub max_size: ByteSize,
    /// Rotated files kept (`path.1` is the newest); 0 keeps none.
    pub keep: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            path: PathBuf::new(),
            max_size: ByteSize(100 << 20),
            keep: 5,
        }
    }
}

/// Smallest `max_size`: a few events per file at least.
const MIN_SIZE: u64 = 4096;
/// Most rotated files (their names are renamed one by one at each rotation).
const MAX_KEEP: u32 = 1000;

impl EventsConfig {
    pub fn is_enabled(&self) -> bool {
        !self.path.as_os_str().is_empty()
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        super::resolve(base, &mut self.path);
    }

    pub fn validate(&self, key: &str, errors: &mut Vec<ConfigError>) {
        if self.max_size.0 < MIN_SIZE {
            errors.push(ConfigError::new(
                format!("{key}.max_size"),
                format!("must be at least {MIN_SIZE} bytes"),
            ));
        }
        if self.keep > MAX_KEEP {
            errors.push(ConfigError::new(
                format!("{key}.keep"),
                format!("must be at most {MAX_KEEP}"),
            ));
        }
        if self.is_enabled() && self.path.file_name().is_none() {
            errors.push(ConfigError::new(
                format!("{key}.path"),
                "must name a file, not a directory",
            ));
        }
    }
}

/// A size from config: a number of bytes, or a string with a unit (`B`, `KB`/`KiB`,
/// `MB`/`MiB`, `GB`/`GiB`, all powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            u => return Err(format!("unknown size unit {u:?} in {s:?}")),
        };
        n.checked_mul(1 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(ByteSize::parse("100MB"), Ok(ByteSize(100 << 20)));
        assert_eq!(ByteSize::parse("64 KiB"), Ok(ByteSize(64 << 10)));
        assert_eq!(ByteSize::parse("2g"), Ok(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert!(ByteSize::parse("1.5MB").is_err());
        assert!(ByteSize::parse("10 parsecs").is_err());
        assert!(ByteSize::parse("99999999999999999999GB").is_err());
        assert!(ByteSize::parse("18446744073709551615GB").is_err());
    }

    #[test]
    fn section_parses_resolves_and_validates() {
        let mut c: EventsConfig =
            toml::from_str("path = \"log/events.jsonl\"\nmax_size = \"1KB\"\nkeep = 5000\n")
                .unwrap();
        c.resolve_paths(Path::new("/etc/wasmrelay"));
        assert_eq!(c.path, Path::new("/etc/wasmrelay/log/events.jsonl"));
        let mut errors = Vec::new();
        c.validate("events", &mut errors);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["events.max_size", "events.keep"]);

        let off = EventsConfig::default();
        assert!(!off.is_enabled());
        let mut errors = Vec::new();
        off.validate("events", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(toml::from_str::<EventsConfig>("max_size = 4096\nrotate = true\n").is_err());
    }
}
