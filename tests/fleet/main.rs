//! Several relays sharing limits, lists and state through one `redis-server` on loopback.
