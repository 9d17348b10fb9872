//! A plugin built against `wasmrelay:plugin@0.1.0`: the host must refuse it and say how to rebuild.
wit_bindgen::generate!({ path: "wit", world: "plugin" });

struct Old;

impl exports::wasmrelay::plugin::hooks::Guest for Old {
    fn hooks() -> Vec<u8> {
        Vec::new()
    }
}

export!(Old);
