//! A plugin built against `wasmrelay:plugin@0.2.0`: the host must refuse the unknown major.
wit_bindgen::generate!({ path: "wit", world: "plugin" });

struct Future;

impl exports::wasmrelay::plugin::hooks::Guest for Future {
    fn hooks() -> Vec<u8> {
        Vec::new()
    }
}

export!(Future);
