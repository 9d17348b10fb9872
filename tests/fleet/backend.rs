//! The Redis backend against the in-process one: the same calls give the same answers, two
//! backends on one Redis (two relays) share every limit exactly under concurrent load, and
//! an outage gives `unavailable` quickly, is counted, and ends by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmrelay::config::state::RedisConfig;
use wasmrelay::state::{
    InProcessBackend, KvCap, QuotaWindow, RedisBackend, StateBackend, StateError,
};
use wasmrelay_test_support::{wait_for_async, RedisServer};

/// A backend on `server` with `prefix`, timeouts as a relay would have them.
fn redis(server: &RedisServer, prefix: &str) -> RedisBackend {
    RedisBackend::new(&RedisConfig {
        url: server.url(),
        key_prefix: prefix.into(),
        command_timeout: Duration::from_millis(250),
        retry_interval: Duration::from_millis(200),
        ..RedisConfig::default()
    })
    .unwrap()
}

fn cap(max_keys: u64, max_bytes: u64) -> KvCap<'static> {
    KvCap {
        namespace: "plugin-a",
        max_keys,
        max_bytes,
    }
}

fn denied<T: std::fmt::Debug>(r: Result<T, StateError>) -> String {
    match r {
        Err(StateError::Denied(why)) => why,
        other => panic!("expected denied, got {other:?}"),
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// The contract every backend keeps, call by call.
async fn conformance(b: &dyn StateBackend) {
    // GCRA: 2 a minute, bursts of 2.
    let first = b.rate_limit("p\0r", 2, MINUTE, 2, 1).await.unwrap();
    assert!(first.allowed && first.remaining == 1, "{first:?}");
    assert!(b.rate_limit("p\0r", 2, MINUTE, 2, 1).await.unwrap().allowed);
    let third = b.rate_limit("p\0r", 2, MINUTE, 2, 1).await.unwrap();
    assert!(!third.allowed && third.remaining == 0, "{third:?}");
    assert!(
        third.retry_after > Duration::from_secs(25) && third.retry_after <= Duration::from_secs(30),
        "{third:?}"
    );
    let huge = b
        .rate_limit("p\0max", u32::MAX, Duration::MAX, u32::MAX, u32::MAX)
        .await
        .unwrap();
    assert!(huge.allowed, "{huge:?}");

    // Windowed counters, saturating.
    assert_eq!(b.counter_add("p\0c", 5, MINUTE).await, Ok(5));
    assert_eq!(b.counter_add("p\0c", -2, MINUTE).await, Ok(3));
    assert_eq!(b.counter_get("p\0c").await, Ok(3));
    assert_eq!(b.counter_get("p\0none").await, Ok(0));
    b.counter_add("p\0sat", i64::MAX, MINUTE).await.unwrap();
    assert_eq!(
        b.counter_add("p\0sat", i64::MAX, MINUTE).await,
        Ok(i64::MAX)
    );
    assert_eq!(
        b.counter_add("p\0neg", i64::MIN, MINUTE).await,
        Ok(i64::MIN)
    );
    assert_eq!(b.counter_add("p\0neg", -1, MINUTE).await, Ok(i64::MIN));

    // Calendar quotas: add-if-under-limit, exact over the whole u64 range.
    let q = b.quota_add("p\0q", 1, 2, QuotaWindow::Day).await.unwrap();
    assert!(q.allowed && q.total == 1, "{q:?}");
    let day_end = QuotaWindow::Day.bounds(std::time::SystemTime::now()).1;
    assert_eq!(q.reset_ms, day_end);
    assert!(
        b.quota_add("p\0q", 1, 2, QuotaWindow::Day)
            .await
            .unwrap()
            .allowed
    );
    let over = b.quota_add("p\0q", 1, 2, QuotaWindow::Day).await.unwrap();
    assert!(!over.allowed && over.total == 2, "{over:?}");
    assert_eq!(
        b.quota_get("p\0q", QuotaWindow::Day).await.unwrap().total,
        2
    );
    assert_eq!(
        b.quota_get("p\0q", QuotaWindow::Hour).await.unwrap().total,
        0
    );
    let max = b
        .quota_add("p\0m", u64::MAX, u64::MAX, QuotaWindow::Day)
        .await
        .unwrap();
    assert!(max.allowed && max.total == u64::MAX, "{max:?}");
    let again = b
        .quota_add("p\0m", u64::MAX, u64::MAX, QuotaWindow::Day)
        .await
        .unwrap();
    assert!(!again.allowed && again.total == u64::MAX, "{again:?}");
    let big = (1u64 << 53) + 1;
    assert!(
        b.quota_add("p\0b", big, big + 1, QuotaWindow::Day)
            .await
            .unwrap()
            .allowed
    );
    let one_more = b
        .quota_add("p\0b", 1, big + 1, QuotaWindow::Day)
        .await
        .unwrap();
    assert!(
        one_more.allowed && one_more.total == big + 1,
        "{one_more:?}"
    );
    assert!(
        !b.quota_add("p\0z", 1, 0, QuotaWindow::Minute)
            .await
            .unwrap()
            .allowed
    );

    // Charges given back (a message that was not queued): never more than was charged.
    let k = "p\0back";
    for _ in 0..2 {
        assert!(b.rate_limit(k, 2, MINUTE, 2, 1).await.unwrap().allowed);
    }
    assert!(!b.rate_limit(k, 2, MINUTE, 2, 1).await.unwrap().allowed);
    assert_eq!(b.rate_refund(k, 2, MINUTE, 1).await, Ok(()));
    let again = b.rate_limit(k, 2, MINUTE, 2, 1).await.unwrap();
    assert!(again.allowed && again.remaining == 0, "{again:?}");
    assert_eq!(b.rate_refund(k, 2, MINUTE, 5).await, Ok(()));
    let fresh = b.rate_limit(k, 2, MINUTE, 2, 2).await.unwrap();
    assert!(
        fresh.allowed && fresh.remaining == 0,
        "no credit past a fresh key: {fresh:?}"
    );
    assert!(!b.rate_limit(k, 2, MINUTE, 2, 1).await.unwrap().allowed);
    assert_eq!(b.rate_refund("p\0never", 2, MINUTE, 1).await, Ok(()));
    let q = b.quota_add("p\0qb", 2, 3, QuotaWindow::Day).await.unwrap();
    let start = q.reset_ms - 86_400_000;
    assert_eq!(
        b.quota_refund("p\0qb", 1, QuotaWindow::Day, start).await,
        Ok(())
    );
    let total =
        |key: &'static str| async move { b.quota_get(key, QuotaWindow::Day).await.unwrap().total };
    assert_eq!(total("p\0qb").await, 1);
    let yesterday = start - 86_400_000;
    assert_eq!(
        b.quota_refund("p\0qb", 1, QuotaWindow::Day, yesterday)
            .await,
        Ok(())
    );
    assert_eq!(
        total("p\0qb").await,
        1,
        "an ended window has nothing to give back"
    );
    assert_eq!(
        b.quota_refund("p\0qb", 5, QuotaWindow::Day, start).await,
        Ok(())
    );
    assert_eq!(total("p\0qb").await, 0);
    assert_eq!(
        b.quota_refund("p\0qnone", 1, QuotaWindow::Day, start).await,
        Ok(())
    );
    assert_eq!(total("p\0qnone").await, 0);
    // Exact over the whole u64 range (Redis subtracts in decimal digits).
    b.quota_add("p\0qbig", u64::MAX, u64::MAX, QuotaWindow::Day)
        .await
        .unwrap();
    let back = (1u64 << 53) + 1;
    assert_eq!(
        b.quota_refund("p\0qbig", back, QuotaWindow::Day, start)
            .await,
        Ok(())
    );
    assert_eq!(total("p\0qbig").await, u64::MAX - back);
    b.quota_add("p\0q10", 1000, 1000, QuotaWindow::Day)
        .await
        .unwrap();
    assert_eq!(
        b.quota_refund("p\0q10", 1, QuotaWindow::Day, start).await,
        Ok(())
    );
    assert_eq!(total("p\0q10").await, 999);

    // kv with caps: keys and bytes (key plus value), replacing and shrinking allowed.
    let c = cap(2, 10);
    assert_eq!(b.kv_set(c, "a", b"1".to_vec(), None).await, Ok(()));
    assert_eq!(b.kv_add(c, "b", b"22".to_vec(), None).await, Ok(true));
    assert_eq!(b.kv_add(c, "b", b"x".to_vec(), None).await, Ok(false));
    assert_eq!(b.kv_get("plugin-a", "b").await, Ok(Some(b"22".to_vec())));
    assert_eq!(
        b.kv_get("plugin-b", "b").await,
        Ok(None),
        "namespaces apart"
    );
    let why = denied(b.kv_set(c, "c", b"1".to_vec(), None).await);
    assert_eq!(why, "kv key cap of 2 reached (limits.kv_keys)");
    let why = denied(b.kv_set(c, "a", vec![b'x'; 8], None).await);
    assert_eq!(why, "kv byte cap of 10 reached (limits.kv_bytes)");
    assert_eq!(b.kv_set(c, "a", b"".to_vec(), None).await, Ok(()));
    assert_eq!(b.kv_delete("plugin-a", "b").await, Ok(true));
    assert_eq!(b.kv_delete("plugin-a", "b").await, Ok(false));
    assert_eq!(b.kv_set(c, "c", b"1".to_vec(), None).await, Ok(()));
    // A key with a TTL goes, and gives its room back.
    let roomy = cap(3, 100);
    let ttl = Some(Duration::from_millis(200));
    assert_eq!(b.kv_add(roomy, "t", b"v".to_vec(), ttl).await, Ok(true));
    denied(b.kv_set(roomy, "u", b"1".to_vec(), None).await);
    wait_for_async("the kv key to expire", Duration::from_secs(20), || async {
        (b.kv_get("plugin-a", "t").await.unwrap().is_none()).then_some(())
    })
    .await;
    assert_eq!(b.kv_add(roomy, "u", b"1".to_vec(), None).await, Ok(true));

    // Lists: new or refreshed, max_members of live members, TTLs, sorted for operators.
    assert_eq!(b.list_add("s", "b@x.test", None, 2).await, Ok(true));
    assert_eq!(b.list_add("s", "b@x.test", None, 2).await, Ok(false));
    assert_eq!(
        b.list_add("s", "a@x.test", Some(Duration::from_secs(3600)), 2)
            .await,
        Ok(true)
    );
    let why = denied(b.list_add("s", "c@x.test", None, 2).await);
    assert_eq!(why, "list \"s\" is full (2 members, lists.max_members)");
    assert_eq!(b.list_contains("s", "a@x.test").await, Ok(true));
    assert_eq!(b.list_contains("t", "a@x.test").await, Ok(false));
    let members = b.list_members("s").await.unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0].member, "a@x.test");
    let expiry = members[0].expires_ms.expect("a TTL");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        expiry > now + 3_500_000 && expiry <= now + 3_600_000 + 5_000,
        "{expiry}"
    );
    assert_eq!(members[1].expires_ms, None);
    assert_eq!(b.list_remove("s", "a@x.test").await, Ok(true));
    assert_eq!(b.list_remove("s", "a@x.test").await, Ok(false));
    let short = Some(Duration::from_millis(200));
    assert_eq!(b.list_add("s", "gone@x.test", short, 2).await, Ok(true));
    wait_for_async("the member to expire", Duration::from_secs(20), || async {
        (!b.list_contains("s", "gone@x.test").await.unwrap()).then_some(())
    })
    .await;
    assert_eq!(
        b.list_add("s", "c@x.test", None, 2).await,
        Ok(true),
        "room again"
    );
    let names: Vec<String> = b
        .list_members("s")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.member)
        .collect();
    assert_eq!(names, ["b@x.test", "c@x.test"]);
}

#[tokio::test]
async fn both_backends_answer_alike() {
    conformance(&InProcessBackend::new()).await;
    let server = RedisServer::start();
    conformance(&redis(&server, "conformance:")).await;
    // Another deployment's prefix sees none of it.
    let other = redis(&server, "other:");
    assert_eq!(other.list_contains("s", "b@x.test").await, Ok(false));
    assert_eq!(other.kv_get("plugin-a", "c").await, Ok(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_backends_on_one_redis_share_limits_exactly() {
    let server = RedisServer::start();
    let relays = [
        Arc::new(redis(&server, "fleet:")),
        Arc::new(redis(&server, "fleet:")),
    ];
    let mut tasks = Vec::new();
    for i in 0..200 {
        let b = relays[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let q = b
                .quota_add("q\0user", 1, 50, QuotaWindow::Day)
                .await
                .unwrap();
            let r = b.rate_limit("q\0rate", 1, MINUTE, 30, 1).await.unwrap();
            let kv = b
                .kv_add(cap(1_000, 1 << 20), &format!("k{}", i % 70), vec![1], None)
                .await;
            let list = b.list_add("l", &format!("m{i}"), None, 40).await;
            (q.allowed, r.allowed, kv, list)
        }));
    }
    let mut quota = 0;
    let mut rate = 0;
    let mut kv_new = 0;
    let mut listed = 0;
    for t in tasks {
        let (q, r, kv, list) = t.await.unwrap();
        quota += u32::from(q);
        rate += u32::from(r);
        kv_new += u32::from(kv.unwrap());
        listed += u32::from(list.is_ok());
    }
    assert_eq!((quota, rate, kv_new, listed), (50, 30, 70, 40));
    let total = relays[1]
        .quota_get("q\0user", QuotaWindow::Day)
        .await
        .unwrap();
    assert_eq!(total.total, 50);
    assert_eq!(relays[0].list_members("l").await.unwrap().len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_is_counted_and_ends_by_itself() {
    let mut server = RedisServer::start();
    let b = redis(&server, "outage:");
    b.list_add("s", "kept@x.test", None, 10).await.unwrap();

    // Killed: the port refuses; calls fail at once, and keep failing fast.
    server.kill();
    let started = Instant::now();
    for _ in 0..20 {
        let r = b.list_contains("s", "kept@x.test").await;
        assert!(matches!(r, Err(StateError::Unavailable(_))), "{r:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let m = b.metrics();
    assert!(m.open && m.outages == 1 && m.fast_failures >= 1, "{m:?}");

    // Back (empty: no persistence in this test): the backend finds it without help.
    server.restart();
    wait_for_async(
        "the backend to reach Redis again",
        Duration::from_secs(30),
        || async { b.list_contains("s", "kept@x.test").await.ok() },
    )
    .await;
    let m = b.metrics();
    assert!(!m.open && m.recoveries == 1, "{m:?}");

    // Frozen: the connection stays up and nothing answers; each call ends at the timeout.
    b.list_add("s", "a@x.test", None, 10).await.unwrap();
    server.freeze();
    let started = Instant::now();
    let r = b.list_contains("s", "a@x.test").await;
    assert!(
        matches!(r, Err(StateError::Unavailable(ref why)) if why.contains("no answer within 250ms")),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(b.metrics().timeouts >= 1);
    server.thaw();
    let hit = wait_for_async(
        "answers after the thaw",
        Duration::from_secs(30),
        || async { b.list_contains("s", "a@x.test").await.ok() },
    )
    .await;
    assert!(hit, "nothing lost while frozen");
    assert_eq!(b.metrics().outages, 2);
}
