//! The `filter` plugin end to end.
