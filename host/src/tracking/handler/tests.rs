use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use wasmrelay_tracking_token::Key;

use super::*;
use crate::config::Config;
use crate::events::{Events, Msg};
use crate::state::{InProcessBackend, StateBackend};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const OLD: &str = "an older secret, kept while its mail is read";

struct Fixture {
    endpoint: Endpoint,
    backend: Arc<InProcessBackend>,
    rx: mpsc::Receiver<Msg>,
}

fn fixture() -> Fixture {
    let text = format!(
        "[[listeners]]\naddress = \"127.0.0.1:2525\"\n[[plugins]]\nbuiltin = \"tracker\"\n\
         config = {{ secret = \"{SECRET}\", old_secrets = [\"{OLD}\"] }}\n\
         [[lists]]\nname = \"suppression\"\n[tracking]\nlisten = \"127.0.0.1:0\"\n"
    );
    let config = Config::parse(&text, Path::new("/")).unwrap();
    let backend = Arc::new(InProcessBackend::new());
    let (events, rx) = Events::channel(64, 1 << 20);
    let endpoint = Endpoint::new(&config, backend.clone(), events).unwrap();
    Fixture {
        endpoint,
        backend,
        rx,
    }
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

fn token(secret: &str, kind: Kind, url: &str, issued: u32) -> String {
    Key::new(secret.as_bytes())
        .unwrap()
        .sign(&Claims {
            kind,
            issued,
            link: if kind == Kind::Click { 2 } else { 0 },
            queue_id: "Q1".into(),
            recipient: "alice@example.org".into(),
            sender_domain: "example.com".into(),
            url: url.into(),
        })
        .unwrap()
}

fn request<'a>(method: &'a Method, path: &'a str) -> Request<'a> {
    Request {
        method,
        path,
        client_ip: "192.0.2.7".parse().unwrap(),
        user_agent: Some("Mozilla/5.0"),
    }
}

impl Fixture {
    async fn ask(&self, method: Method, path: &str) -> Reply {
        self.endpoint.handle(&request(&method, path)).await
    }

    /// The events written so far, as JSON without `time`.
    fn events(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(Msg::Event(e, _)) = self.rx.try_recv() {
            let mut line = Vec::new();
            e.write_line(&mut line);
            let mut v: Value = serde_json::from_slice(&line).unwrap();
            v.as_object_mut().unwrap().remove("time");
            out.push(v);
        }
        out
    }
}

#[tokio::test]
async fn opens_are_counted_and_logged() {
    let mut f = fixture();
    let path = format!("/o/{}", token(SECRET, Kind::Open, "", now()));
    assert_eq!(f.ask(Method::GET, &path).await, Reply::Pixel);
    assert_eq!(f.ask(Method::GET, &path).await, Reply::Pixel);
    // A HEAD is answered like a GET and recorded nowhere.
    assert_eq!(f.ask(Method::HEAD, &path).await, Reply::Pixel);
    let events = f.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[1],
        serde_json::json!({"event": "open", "queue_id": "Q1", "recipient": "alice@example.org",
            "sender_domain": "example.com", "link": 0, "client_ip": "192.0.2.7",
            "user_agent": "Mozilla/5.0", "count": 2})
    );
    let response = Reply::Pixel.into_response();
    assert_eq!(response.headers()["content-type"], "image/gif");
    assert_eq!(&PIXEL[..6], b"GIF89a");
    assert_eq!(PIXEL.len(), 43);
}

#[tokio::test]
async fn clicks_redirect_only_to_the_signed_url() {
    let mut f = fixture();
    let url = "https://shop.example.com/sale?a=1&b=\u{e9}";
    let path = format!("/c/{}", token(SECRET, Kind::Click, url, now()));
    assert_eq!(
        f.ask(Method::GET, &path).await,
        Reply::Redirect("https://shop.example.com/sale?a=1&b=%C3%A9".into())
    );
    let events = f.events();
    assert_eq!(events[0]["event"], "click");
    assert_eq!(events[0]["link"], 2);
    assert_eq!(events[0]["url"], url);
    assert_eq!(events[0]["count"], 1);
    let response = Reply::Redirect("https://e.example/".into()).into_response();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "https://e.example/");
}

#[tokio::test]
async fn only_a_post_unsubscribes() {
    let mut f = fixture();
    let path = format!("/u/{}", token(SECRET, Kind::Unsubscribe, "", now()));
    let confirm = f.ask(Method::GET, &path).await;
    assert_eq!(
        confirm,
        Reply::ConfirmUnsubscribe {
            recipient: "alice@example.org".into(),
            sender_domain: "example.com".into()
        }
    );
    assert!(f.events().is_empty());
    let member = || f.backend.list_contains("suppression", "alice@example.org");
    assert!(
        !member().await.unwrap(),
        "a GET (a link scanner) unsubscribes no one"
    );
    assert!(matches!(
        f.ask(Method::POST, &path).await,
        Reply::Unsubscribed { .. }
    ));
    assert!(f
        .backend
        .list_contains("suppression", "alice@example.org")
        .await
        .unwrap());
    assert!(matches!(
        f.ask(Method::POST, &path).await,
        Reply::Unsubscribed { .. }
    ));
    let events = f.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event"], "unsubscribe");
    assert_eq!(events[0]["list"], "suppression");
    assert_eq!(events[0]["new"], true);
    assert_eq!(events[1]["new"], false);
    // The page escapes what it shows and posts back to itself.
    let html = confirm.into_response();
    let csp = html.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action 'self'"), "{csp}");
}

#[tokio::test]
async fn bad_tokens_get_404_and_record_nothing() {
    let mut f = fixture();
    let good = token(SECRET, Kind::Click, "https://example.com/", now());
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let forged = token(
        "a key that is not ours, but long enough!",
        Kind::Click,
        "https://evil.example/",
        now(),
    );
    let expired = token(SECRET, Kind::Click, "https://example.com/", 1);
    for path in [
        format!("/c/{tampered}"),
        format!("/c/{forged}"),
        format!("/c/{expired}"),
        format!("/o/{good}"),
        format!("/u/{good}"),
        format!("/c/{good}/x"),
        format!("/cc/{good}"),
        "/c/".to_string(),
        "/".to_string(),
        "/c/%00%ff".to_string(),
        format!("/c/{}", "A".repeat(10_000)),
    ] {
        let method = if path.starts_with("/u/") {
            Method::POST
        } else {
            Method::GET
        };
        assert_eq!(f.ask(method, &path).await, Reply::NotFound, "{path}");
    }
    assert!(f.events().is_empty());
    assert!(f
        .backend
        .list_members("suppression")
        .await
        .unwrap()
        .is_empty());
    // Wrong methods are refused before the token is looked at.
    assert_eq!(
        f.ask(Method::POST, &format!("/c/{good}")).await,
        Reply::MethodNotAllowed("GET, HEAD")
    );
    assert_eq!(
        f.ask(Method::DELETE, "/u/garbage").await,
        Reply::MethodNotAllowed("GET, HEAD, POST")
    );
}

#[tokio::test]
async fn old_secrets_still_verify() {
    let f = fixture();
    let path = format!(
        "/c/{}",
        token(OLD, Kind::Click, "http://example.com/", now())
    );
    assert_eq!(
        f.ask(Method::GET, &path).await,
        Reply::Redirect("http://example.com/".into())
    );
}

#[test]
fn routes() {
    assert_eq!(route("/o/abc"), Some((Kind::Open, "abc")));
    assert_eq!(route("/u/abc"), Some((Kind::Unsubscribe, "abc")));
    for bad in [
        "",
        "/",
        "/o",
        "/o/",
        "/x/abc",
        "/oo/abc",
        "o/abc",
        "/o/a/b",
        "/\u{e9}/a",
    ] {
        assert_eq!(route(bad), None, "{bad}");
    }
}
