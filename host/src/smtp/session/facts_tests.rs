//! The connection facts plugins see are built once and reused from hook to hook: they must
//! still change the moment a greeting or AUTH changes the connection.

use super::*;
use crate::config::plugins::PluginConfig;
use crate::plugins::test_plugins::component;
use crate::plugins::{PluginHost, PluginHostOptions};

async fn facts_echo() -> Arc<PluginHost> {
    let config: PluginConfig = toml::from_str(&format!(
        "path = {:?}",
        component("facts-echo").display().to_string()
    ))
    .unwrap();
    let opts = PluginHostOptions {
        max_instances: 8,
        ..PluginHostOptions::default()
    };
    PluginHost::load(&[config], opts).await.unwrap()
}

/// What the `facts-echo` plugin saw in a transaction from `sender` (it refuses at RCPT with
/// them).
async fn seen(c: &mut Client, sender: &str) -> String {
    c.cmd(&format!("MAIL FROM:<{sender}>"), "250").await;
    let reply = c.cmd("RCPT TO:<user@example.com>", "550 5.7.1").await;
    reply
        .trim_end()
        .trim_start_matches("550 5.7.1 ")
        .to_string()
}

#[tokio::test]
async fn plugins_see_helo_and_auth_as_they_change() {
    let mut opts = Options::default();
    opts.listener.allow_plaintext_auth = true;
    opts.users = vec![user("alice", "s3cret")];
    // Plaintext AUTH is allowed from loopback only.
    opts.peer = "127.0.0.1:5000".parse().unwrap();
    opts.plugins = Some(facts_echo().await);
    let mut c = start(opts).greeted().await;
    c.cmd("HELO first.test", "250").await;
    assert_eq!(
        seen(&mut c, "a@example.org").await,
        "helo=first.test tls=none auth=none trusted=no"
    );
    // A second greeting resets the transaction and changes the name.
    c.cmd("EHLO second.test", "250").await;
    assert_eq!(
        seen(&mut c, "a@example.org").await,
        "helo=second.test tls=none auth=none trusted=no"
    );
    // "\0alice\0s3cret": authenticated, the session may now relay.
    c.cmd("RSET", "250").await;
    c.cmd("AUTH PLAIN AGFsaWNlAHMzY3JldA==", "235").await;
    assert_eq!(
        seen(&mut c, "alice@example.org").await,
        "helo=second.test tls=none auth=alice trusted=yes"
    );
    // A new greeting changes the name and keeps the authentication.
    c.cmd("EHLO third.test", "250").await;
    assert_eq!(
        seen(&mut c, "alice@example.org").await,
        "helo=third.test tls=none auth=alice trusted=yes"
    );
}
