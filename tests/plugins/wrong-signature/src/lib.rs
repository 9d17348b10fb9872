//! A component that exports every hook of `wasmrelay:plugin/hooks@0.2.1` by name, each with
//! the wrong signature (`wit/plugin.wit`): the host must refuse it at load, naming the first
//! export whose type does not match, and never call it.
wit_bindgen::generate!({ path: "wit", world: "plugin" });

struct Wrong;

impl exports::wasmrelay::plugin::hooks::Guest for Wrong {
    fn init() -> u32 {
        0
    }
    fn hooks() {}
    fn connect() {}
    fn helo() {}
    fn auth() {}
    fn mail_from() {}
    fn rcpt() {}
    fn data() {}
    fn queued() {}
    fn closed() {}
    fn route() {}
    fn recipient_copy() {}
    fn delivery_result() {}
}

export!(Wrong);
