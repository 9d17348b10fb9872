//! The connection facts plugins see are built once and reused from hook to hook: they must
//! still change the moment a greeting, STARTTLS or AUTH changes the connection.

use super::tls_tests::{start_tls, tls_pair};
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

/// Reads until a reply's last line (`NNN ` after a line break) has arrived.
async fn reply<R: tokio::io::AsyncRead + Unpin>(stream: &mut R) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text
        .lines()
        .last()
        .is_some_and(|l| l.as_bytes().get(3) == Some(&b' ') && text.ends_with("\r\n"))
    {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed after {text:?}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text
}

/// The same greeting before and after STARTTLS: only TLS tells the two sets of facts apart.
#[tokio::test]
async fn plugins_see_tls_once_it_is_up() {
    let (acceptor, client_config) = tls_pair();
    let store = Arc::new(MemStore::default());
    let mut client = start_tls(acceptor, store, Some(facts_echo().await));
    assert!(reply(&mut client).await.starts_with("220 "));
    say(&mut client, "EHLO client.test").await;
    say(&mut client, "MAIL FROM:<a@example.org>").await;
    let plain = say(&mut client, "RCPT TO:<user@example.com>").await;
    assert_eq!(
        plain,
        "550 5.7.1 helo=client.test tls=none auth=none trusted=no\r\n"
    );
    assert!(say(&mut client, "STARTTLS").await.starts_with("220 "));
    let connector = tokio_rustls::TlsConnector::from(client_config);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, client).await.unwrap();
    say(&mut tls, "EHLO client.test").await;
    say(&mut tls, "MAIL FROM:<a@example.org>").await;
    let secured = say(&mut tls, "RCPT TO:<user@example.com>").await;
    assert!(
        secured.starts_with("550 5.7.1 helo=client.test tls=TLS")
            && secured.ends_with(" auth=none trusted=no\r\n"),
        "{secured}"
    );
}

/// Sends one command line over a plain or TLS stream and reads its reply.
async fn say<S>(stream: &mut S, line: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    reply(stream).await
}
