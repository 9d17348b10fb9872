//! A valid component that is not a wasmrelay plugin: the host must refuse it at load.
wit_bindgen::generate!({ path: "wit", world: "runner" });

struct Runner;

impl Guest for Runner {
    fn run() -> u32 {
        42
    }
}

export!(Runner);
