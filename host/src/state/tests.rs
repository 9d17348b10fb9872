//! The in-process backend through the trait: rates, counters, quotas, kv caps and lists,
//! then the list journal across restarts (torn and damaged records, compaction, the lock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::journal::{self, LockMode, Record};
use super::*;

/// A wall clock the test moves by hand.
fn clock_at(ms: u64) -> (Arc<AtomicU64>, Arc<dyn Fn() -> SystemTime + Send + Sync>) {
    let now = Arc::new(AtomicU64::new(ms));
    let read = now.clone();
    let clock = Arc::new(move || {
        SystemTime::UNIX_EPOCH + Duration::from_millis(read.load(Ordering::SeqCst))
    });
    (now, clock)
}

#[tokio::test(start_paused = true)]
async fn gcra_allows_burst_then_paces() {
    let b = InProcessBackend::new();
    let minute = Duration::from_secs(60);
    let d1 = b.rate_limit("k", 2, minute, 2, 1).await.unwrap();
    let d2 = b.rate_limit("k", 2, minute, 2, 1).await.unwrap();
    let d3 = b.rate_limit("k", 2, minute, 2, 1).await.unwrap();
    assert!(d1.allowed && d2.allowed && !d3.allowed);
    assert_eq!((d1.remaining, d2.remaining), (1, 0));
    assert_eq!(d3.retry_after, Duration::from_secs(30));
    assert!(
        b.rate_limit("other", 2, minute, 2, 1)
            .await
            .unwrap()
            .allowed
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(b.rate_limit("k", 2, minute, 2, 1).await.unwrap().allowed);
    assert!(!b.rate_limit("k", 2, minute, 2, 1).await.unwrap().allowed);
}

#[tokio::test(start_paused = true)]
async fn gcra_charging_nothing_leaves_the_burst_whole() {
    let b = InProcessBackend::new();
    let minute = Duration::from_secs(60);
    let nothing = b.rate_limit("k", 2, minute, 2, 0).await.unwrap();
    assert!(nothing.allowed);
    assert_eq!(nothing.remaining, 2);
    let both = b.rate_limit("k", 2, minute, 2, 2).await.unwrap();
    assert!(both.allowed, "the whole burst is still there");
    assert_eq!(both.remaining, 0);
    let again = b.rate_limit("k", 2, minute, 2, 0).await.unwrap();
    assert!(again.allowed, "a charge of nothing always fits");
    assert_eq!(again.remaining, 0, "and leaves a spent burst spent");
    assert!(!b.rate_limit("k", 2, minute, 2, 1).await.unwrap().allowed);
}

#[tokio::test(start_paused = true)]
async fn gcra_extreme_arguments_saturate_instead_of_panicking() {
    let b = InProcessBackend::new();
    let huge = Duration::from_millis(u64::MAX);
    let d = b
        .rate_limit("x", 1, huge, u32::MAX, u32::MAX)
        .await
        .unwrap();
    assert!(d.allowed);
    let d = b
        .rate_limit("x", 1, huge, u32::MAX, u32::MAX)
        .await
        .unwrap();
    assert!(!d.allowed);
    let d = b
        .rate_limit("y", u32::MAX, Duration::from_nanos(1), 1, u32::MAX)
        .await;
    assert!(d.is_ok());
}

#[tokio::test(start_paused = true)]
async fn counter_window_resets_and_saturates() {
    let b = InProcessBackend::new();
    let w = Duration::from_secs(10);
    assert_eq!(b.counter_add("c", 3, w).await, Ok(3));
    assert_eq!(b.counter_add("c", 2, w).await, Ok(5));
    assert_eq!(b.counter_get("c").await, Ok(5));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(b.counter_get("c").await, Ok(0));
    assert_eq!(b.counter_add("c", 1, w).await, Ok(1));
    assert_eq!(b.counter_add("c", i64::MAX, w).await, Ok(i64::MAX));
    assert_eq!(
        b.counter_add("forever", 1, Duration::from_millis(u64::MAX))
            .await,
        Ok(1)
    );
}

const CAP: KvCap<'static> = KvCap {
    namespace: "p",
    max_keys: 100,
    max_bytes: 1 << 20,
};

#[tokio::test(start_paused = true)]
async fn kv_ttl_and_add() {
    let b = InProcessBackend::new();
    b.kv_set(CAP, "a", b"1".to_vec(), Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(b.kv_add(CAP, "a", b"2".to_vec(), None).await, Ok(false));
    assert_eq!(
        b.kv_get("p", "a").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        b.kv_get("other", "a").await,
        Ok(None),
        "namespaces are apart"
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(b.kv_get("p", "a").await, Ok(None));
    assert_eq!(b.kv_usage("p"), (0, 0), "expiry gives the room back");
    assert_eq!(b.kv_add(CAP, "a", b"2".to_vec(), None).await, Ok(true));
    assert_eq!(b.kv_delete("p", "a").await, Ok(true));
    assert_eq!(b.kv_delete("p", "a").await, Ok(false));
}

#[tokio::test]
async fn kv_caps_are_enforced_by_the_backend() {
    let b = InProcessBackend::new();
    let cap = KvCap {
        max_keys: 3,
        max_bytes: 1_000,
        ..CAP
    };
    for k in ["a", "b", "c"] {
        b.kv_set(cap, k, vec![0; 10], None).await.unwrap();
    }
    assert!(matches!(
        b.kv_set(cap, "d", vec![], None).await,
        Err(StateError::Denied(m)) if m.contains("limits.kv_keys")
    ));
    assert!(matches!(
        b.kv_add(cap, "d", vec![], None).await,
        Err(StateError::Denied(_))
    ));
    assert!(matches!(
        b.kv_set(cap, "a", vec![0; 1_000], None).await,
        Err(StateError::Denied(m)) if m.contains("limits.kv_bytes")
    ));
    assert_eq!(b.kv_usage("p"), (3, 33));
    // Concurrent writers cannot overshoot: the check and the write are one step.
    let b = Arc::new(InProcessBackend::new());
    let cap = KvCap {
        max_keys: 50,
        ..CAP
    };
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.kv_set(cap, &format!("k{i}"), vec![1], None).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap().is_ok() as usize;
    }
    assert_eq!((ok, b.kv_usage("p").0), (50, 50));
}

#[tokio::test]
async fn quotas_follow_calendar_windows_in_utc() {
    // 2026-12-01 23:59:30 UTC
    let (now, clock) = clock_at(1_796_169_570_000);
    let b = InProcessBackend::with_clock(clock);
    let day_end = 1_796_169_600_000;
    let d = b.quota_add("u", 2, 3, QuotaWindow::Day).await.unwrap();
    assert_eq!((d.allowed, d.total, d.reset_ms), (true, 2, day_end));
    let d = b.quota_add("u", 2, 3, QuotaWindow::Day).await.unwrap();
    assert_eq!(
        (d.allowed, d.total),
        (false, 2),
        "over the limit adds nothing"
    );
    let d = b.quota_add("u", 1, 3, QuotaWindow::Day).await.unwrap();
    assert_eq!((d.allowed, d.total), (true, 3));
    // Another window size of the same key is independent.
    let m = b.quota_get("u", QuotaWindow::Minute).await.unwrap();
    assert_eq!((m.total, m.reset_ms), (0, day_end));
    // Midnight UTC starts a new day.
    now.store(day_end + 1, Ordering::SeqCst);
    let d = b.quota_get("u", QuotaWindow::Day).await.unwrap();
    assert_eq!((d.total, d.reset_ms), (0, day_end + 86_400_000));
    let d = b
        .quota_add("u", u64::MAX, u64::MAX, QuotaWindow::Day)
        .await
        .unwrap();
    assert!(d.allowed);
    let d = b
        .quota_add("u", 1, u64::MAX, QuotaWindow::Day)
        .await
        .unwrap();
    assert!(!d.allowed, "a total that would overflow is over any limit");
}

#[tokio::test]
async fn lists_with_ttl_on_the_wall_clock() {
    let (now, clock) = clock_at(1_000_000);
    let b = InProcessBackend::with_clock(clock);
    let max = 100;
    assert_eq!(
        b.list_add("suppression", "a@x.test", None, max).await,
        Ok(true)
    );
    assert_eq!(
        b.list_add("suppression", "a@x.test", None, max).await,
        Ok(false)
    );
    let five = Some(Duration::from_secs(5));
    assert_eq!(
        b.list_add("suppression", "b@x.test", five, max).await,
        Ok(true)
    );
    assert_eq!(b.list_contains("suppression", "b@x.test").await, Ok(true));
    assert_eq!(b.list_contains("other", "a@x.test").await, Ok(false));
    assert_eq!(
        b.list_members("suppression").await.unwrap()[1].expires_ms,
        Some(1_005_000)
    );
    now.store(1_005_000, Ordering::SeqCst);
    assert_eq!(b.list_contains("suppression", "b@x.test").await, Ok(false));
    assert_eq!(
        b.list_members("suppression").await,
        Ok(vec![ListMember {
            member: "a@x.test".into(),
            expires_ms: None
        }])
    );
    assert_eq!(b.list_remove("suppression", "a@x.test").await, Ok(true));
    assert_eq!(b.list_remove("suppression", "a@x.test").await, Ok(false));
    assert!(matches!(
        b.list_add("tiny", "x", None, 0).await,
        Err(StateError::Denied(_))
    ));
}

// ---- the list journal ----

const MAX: u64 = 1_000;

fn open(dir: &std::path::Path) -> (InProcessBackend, journal::LoadReport) {
    InProcessBackend::open(dir, LockMode::Try).unwrap()
}

async fn members(b: &InProcessBackend, list: &str) -> Vec<String> {
    let all = b.list_members(list).await.unwrap();
    all.into_iter().map(|m| m.member).collect()
}

fn journal_path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(journal::JOURNAL)
}

/// A journal under `dir` in which `members` were added to list `s`, closed; its path.
async fn journal_of(dir: &std::path::Path, members: &[&str]) -> std::path::PathBuf {
    let (b, _) = open(dir);
    for m in members {
        b.list_add("s", m, None, MAX).await.unwrap();
    }
    journal_path(dir)
}

/// A change the journal cannot take (its writer gone) is an error at once, undone in memory:
/// not a caller blocked on the lock it holds.
#[test]
fn a_stopped_journal_writer_refuses_changes_and_undoes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = open(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(
        rt.block_on(b.list_add("s", "kept@x.test", None, MAX)),
        Ok(true)
    );
    b.stop_journal_writer();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let added = rt.block_on(b.list_add("s", "new@x.test", None, MAX));
        let removed = rt.block_on(b.list_remove("s", "kept@x.test"));
        let left = rt.block_on(members(&b, "s"));
        let _ = tx.send((added, removed, left));
    });
    let (added, removed, left) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("list changes answer with the writer gone");
    assert!(
        matches!(added, Err(StateError::Unavailable(_))),
        "{added:?}"
    );
    assert!(
        matches!(removed, Err(StateError::Unavailable(_))),
        "{removed:?}"
    );
    assert_eq!(left, ["kept@x.test"]);
}

#[tokio::test]
async fn lists_survive_a_restart_with_their_ttls() {
    let dir = tempfile::tempdir().unwrap();
    let (now, clock) = clock_at(1_000_000);
    {
        let (b, report) =
            InProcessBackend::open_with_clock(dir.path(), LockMode::Try, clock.clone()).unwrap();
        assert_eq!(report, journal::LoadReport::default());
        assert_eq!(b.list_add("s", "a@x.test", None, MAX).await, Ok(true));
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(b.list_add("s", "b@x.test", hour, MAX).await, Ok(true));
        assert_eq!(b.list_add("s", "gone@x.test", None, MAX).await, Ok(true));
        assert_eq!(b.list_remove("s", "gone@x.test").await, Ok(true));
        let minute = Some(Duration::from_secs(60));
        assert_eq!(
            b.list_add("t", "weird \"member\"\nwith a newline", minute, MAX)
                .await,
            Ok(true)
        );
        // A second writer is kept out while this one holds the journal.
        assert!(matches!(
            InProcessBackend::open(dir.path(), LockMode::Try),
            Err(journal::JournalError::Busy { .. })
        ));
    }
    now.store(1_000_000 + 61_000, Ordering::SeqCst);
    let (b, report) = InProcessBackend::open_with_clock(dir.path(), LockMode::Try, clock).unwrap();
    assert_eq!((report.records, report.members), (5, 2), "{report:?}");
    assert_eq!(members(&b, "s").await, ["a@x.test", "b@x.test"]);
    assert_eq!(
        b.list_members("s").await.unwrap()[1].expires_ms,
        Some(1_000_000 + 3_600_000),
        "the TTL runs on the wall clock, across the restart"
    );
    assert!(
        members(&b, "t").await.is_empty(),
        "expired while the relay was down"
    );
    // `read` sees the same without a lock.
    let read = journal::read(dir.path(), 1_000_000 + 61_000).unwrap();
    assert_eq!(read["s"].len(), 2);
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_of(dir.path(), &["a", "b", "c"]).await;
    // A crash in the middle of appending `c`'s record.
    let full = std::fs::read(&path).unwrap();
    let torn = full.len() - 7;
    std::fs::write(&path, &full[..torn]).unwrap();
    let good = full[..torn].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let (b, report) = open(dir.path());
    assert_eq!(report.torn_bytes, (torn - good) as u64);
    assert_eq!((report.records, report.corrupt), (2, 0));
    assert_eq!(members(&b, "s").await, ["a", "b"]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good as u64);
    // Appends after the cut are whole records again.
    b.list_add("s", "d", None, MAX).await.unwrap();
    drop(b);
    let (b, report) = open(dir.path());
    assert_eq!((report.torn_bytes, report.corrupt), (0, 0));
    assert_eq!(members(&b, "s").await, ["a", "b", "d"]);

    // Zeros after the last record (delayed allocation after a power cut) are a torn tail too.
    drop(b);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(&[0; 300]);
    bytes.push(b'\n');
    std::fs::write(&path, &bytes).unwrap();
    let (b, report) = open(dir.path());
    assert_eq!(report.torn_bytes, 301);
    assert_eq!(members(&b, "s").await, ["a", "b", "d"]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len as u64);
}

#[tokio::test]
async fn a_damaged_record_between_good_ones_is_skipped_and_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_of(dir.path(), &["a", "b", "c"]).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let damaged = text.replacen("\"member\":\"b\"", "\"member\":\"B\"", 1);
    assert_ne!(text, damaged);
    std::fs::write(&path, &damaged).unwrap();
    let (b, report) = open(dir.path());
    assert_eq!(
        (report.records, report.corrupt, report.compacted),
        (2, 1, true)
    );
    assert_eq!(members(&b, "s").await, ["a", "c"]);
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("lists.journal.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), damaged);
    drop(b);
    let (_, report) = open(dir.path());
    assert_eq!((report.records, report.corrupt), (2, 0), "compacted clean");
}

#[test]
fn a_foreign_file_is_refused_and_a_torn_header_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    std::fs::write(&path, "not a journal\n").unwrap();
    assert!(matches!(
        InProcessBackend::open(dir.path(), LockMode::Try),
        Err(journal::JournalError::Format { .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a journal\n");
    std::fs::write(&path, "wasmrelay-li").unwrap();
    let (_, report) = open(dir.path());
    assert_eq!(report.torn_bytes, 12);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "wasmrelay-lists-v1\n"
    );
}

#[tokio::test]
async fn a_large_journal_is_compacted_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"wasmrelay-lists-v1\n".to_vec();
    let mut n = 0;
    while (bytes.len() as u64) < journal::COMPACT_MIN {
        let member = format!("churn-{}", (n / 2) % 10);
        let record = if n % 2 == 0 {
            Record::Add {
                list: "s".into(),
                member,
                expires_ms: None,
            }
        } else {
            Record::Remove {
                list: "s".into(),
                member,
            }
        };
        journal::encode(&record, &mut bytes);
        n += 1;
    }
    let keep = Record::Add {
        list: "s".into(),
        member: "kept".into(),
        expires_ms: None,
    };
    journal::encode(&keep, &mut bytes);
    std::fs::write(journal_path(dir.path()), &bytes).unwrap();
    let (b, report) = open(dir.path());
    assert!(report.compacted, "{report:?}");
    assert_eq!(report.records, n + 1);
    let expected = n % 2; // an odd count ends on an add
    assert_eq!(report.members, 1 + expected);
    assert!(members(&b, "s").await.contains(&"kept".to_string()));
    let len = std::fs::metadata(journal_path(dir.path())).unwrap().len();
    assert!(len < 200, "compacted to {len} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_backend_compacts_once_the_journal_has_grown() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = open(dir.path());
    let b = Arc::new(b);
    b.list_add("big", "kept", None, MAX).await.unwrap();
    // About 2.3 MB of records for members that come and go, 20 at a time (concurrent
    // writers share syncs; few members are live whenever a compaction snapshots them).
    let churn = |i: usize| {
        let b = b.clone();
        tokio::spawn(async move {
            let member = format!("{i:04}{}", "x".repeat(1_000));
            b.list_add("big", &member, None, 10_000).await?;
            b.list_remove("big", &member).await
        })
    };
    for chunk in (0..1_100).collect::<Vec<_>>().chunks(20) {
        for task in chunk.iter().map(|&i| churn(i)).collect::<Vec<_>>() {
            assert_eq!(task.await.unwrap(), Ok(true));
        }
    }
    b.list_add("small", "after", None, MAX).await.unwrap();
    let Ok(b) = Arc::try_unwrap(b) else {
        panic!("tasks hold the backend")
    };
    drop(b);
    let len = std::fs::metadata(journal_path(dir.path())).unwrap().len();
    assert!(
        len < journal::COMPACT_MIN + 1_000,
        "the journal is {len} bytes: never compacted"
    );
    let (b, _) = open(dir.path());
    assert_eq!(members(&b, "big").await, ["kept"]);
    assert_eq!(members(&b, "small").await, ["after"]);
}
