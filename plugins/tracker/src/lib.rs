//! The bundled `tracker` policy plugin (see plugins/README.md).
use serde::Deserialize;
use wasmrelay_plugin_sdk::{export_plugin, Hook, Plugin};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

struct Tracker {
    _config: Config,
}

impl Plugin for Tracker {
    const HOOKS: &'static [Hook] = &[];

    fn init(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| e.to_string())?;
        Ok(Tracker { _config: config })
    }
}

export_plugin!(Tracker);
