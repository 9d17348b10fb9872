//! The `rate-limit` plugin end to end.
