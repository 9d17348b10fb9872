mod bindings;
pub mod context;
pub mod message;
