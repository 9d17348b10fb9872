//! The `router` plugin end to end.
