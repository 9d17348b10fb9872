//! The `tracker` plugin end to end.
