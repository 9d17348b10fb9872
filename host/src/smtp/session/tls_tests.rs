//! STARTTLS in the session: what is learnt before the handshake is forgotten after it.

use super::*;

/// A TLS acceptor for a fresh self-signed certificate, and a client config that trusts it.
pub(super) fn tls_pair() -> (TlsAcceptor, Arc<rustls::ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let acceptor = crate::smtp::tls::acceptor(&cert_path, &key_path).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (acceptor, Arc::new(client))
}

/// A session on a relay listener that offers STARTTLS, with the default options otherwise;
/// the client's end of the stream.
pub(super) fn start_tls(
    acceptor: TlsAcceptor,
    store: Arc<MemStore>,
    plugins: Option<Arc<crate::plugins::PluginHost>>,
) -> DuplexStream {
    let opts = Options::default();
    let env = Arc::new(SessionEnv {
        hostname: "mx.test".into(),
        listener: opts.listener,
        relay: opts.relay,
        limits: opts.limits,
        users: Users::default(),
        tls: Some(acceptor),
        store,
        plugins,
        authenticator: None,
        events: Default::default(),
    });
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(run(
        server,
        opts.peer,
        "127.0.0.1:25".parse().unwrap(),
        env,
        CancellationToken::new(),
    ));
    client
}

#[tokio::test]
async fn starttls_discards_pipelined_plaintext_and_requires_new_ehlo() {
    let (acceptor, client_config) = tls_pair();
    let store = Arc::new(MemStore::default());
    let client = start_tls(acceptor, store.clone(), None);
    let mut c = Client {
        stream: client,
        store,
        shutdown: CancellationToken::new(),
        task: tokio::spawn(async {}),
        pending: vec![],
    };
    c = c.greeted().await;
    let ehlo = c.cmd("EHLO client.test", "250").await;
    assert!(ehlo.contains("STARTTLS"));
    // The injection of CVE-2011-0411: a command pipelined in the clear after STARTTLS.
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
        .await;
    let reply = c.reply().await;
    assert!(reply.starts_with("220 2.0.0"), "{reply}");
    assert!(c.pending.is_empty());
    let connector = tokio_rustls::TlsConnector::from(client_config);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, c.stream).await.unwrap();
    // Had the injected MAIL survived, this MAIL would get 503 (nested) instead of needing EHLO.
    tls.write_all(b"MAIL FROM:<a@example.org>\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        reply.starts_with("503 5.5.1 Send HELO/EHLO first"),
        "{reply}"
    );
    tls.write_all(b"EHLO client.test\r\n").await.unwrap();
    let n = tls.read(&mut buf).await.unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        reply.starts_with("250-mx.test") && !reply.contains("STARTTLS"),
        "{reply}"
    );
    tls.write_all(b"MAIL FROM:<a@example.org>\r\n")
        .await
        .unwrap();
    let n = tls.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("250 2.1.0"));
}
