//! What an operator runs: the README's commands, the systemd unit, the log formats.
