//! The segment log's own properties: group commit, torn tails, damage, reclaiming,
//! relocation, migration from the previous layout, deferred durability of updates.

use std::fs;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::tests::{body, envelope, find_in, flip, segments, store_one};
use super::*;

fn small_segments(size: u64) -> SpoolOptions {
    SpoolOptions {
        segment_size: size,
        ..SpoolOptions::default()
    }
}

/// Polls `cond` until it holds, for at most 30 s.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
// The guard holds back the committer thread, never a task, so no task waits on it.
#[allow(clippy::await_holding_lock)]
async fn concurrent_stores_share_one_fdatasync() {
    const N: i64 = 16;
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    // Hold the committer back until all N stores are queued: then they are one batch, and
    // one fdatasync acknowledges them all.
    let gate = spool.inner.shared.gate.lock().unwrap();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let spool = spool.clone();
            tokio::spawn(async move { store_one(&spool, &["r@example.com"], i as u8).await })
        })
        .collect();
    let shared = spool.inner.shared.clone();
    until("every store queued", || {
        shared.in_flight.load(Ordering::Acquire) == N
    })
    .await;
    drop(gate);
    let mut stored = Vec::new();
    for t in tasks {
        stored.push(t.await.unwrap());
    }
    let s = spool.stats();
    assert_eq!(s.stored, N as u64);
    assert_eq!(
        (s.file_syncs, s.commits, s.max_commit),
        (1, 1, N as u64),
        "{s:?}"
    );
    assert!(s.file_syncs + s.dir_syncs < N as u64);
    drop(spool);
    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(report.recovered, N as usize);
    for (env, msg) in &stored {
        assert_eq!(&spool.message(&env.id).await.unwrap(), msg);
    }
}

#[tokio::test]
async fn a_torn_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = {
        let (spool, _) = Spool::open(dir.path()).await.unwrap();
        (
            store_one(&spool, &["r@example.com"], 0).await,
            store_one(&spool, &["r@example.com"], 1).await,
        )
    };
    let seg = segments(dir.path()).pop().unwrap();
    let full = fs::metadata(&seg).unwrap().len();
    // The second record loses its last bytes: a batch the crash interrupted.
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(full - 10).unwrap();
    drop(f);
    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(
        (report.recovered, report.discarded_partial, report.corrupt),
        (1, 1, 0)
    );
    assert_eq!(spool.list().await, vec![first.0.clone()]);
    assert!(matches!(
        spool.envelope(&second.0.id).await,
        Err(SpoolError::NotFound(_))
    ));
    let cut = fs::metadata(&seg).unwrap().len();
    assert!(cut < full - 10, "cut back to the last whole record");
    // Appending continues after the last whole record, and all of it reopens cleanly.
    let third = store_one(&spool, &["r@example.com"], 2).await;
    drop(spool);
    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(
        (report.recovered, report.discarded_partial, report.corrupt),
        (2, 0, 0)
    );
    assert_eq!(spool.message(&third.0.id).await.unwrap(), third.1);
    assert_eq!(spool.message(&first.0.id).await.unwrap(), first.1);
}

#[tokio::test]
async fn damage_in_a_sealed_segment_is_moved_aside_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments(2500);
    let mut stored = Vec::new();
    {
        let (spool, _) = Spool::open_with(dir.path(), opts.clone()).await.unwrap();
        for seed in 0..9 {
            stored.push(store_one(&spool, &["r@example.com"], seed).await);
        }
        // One finished message whose Done record sits in a later segment than its Message.
        spool.remove(&stored[0].0.id).await.unwrap();
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    // Damage the second message's bytes in the first (sealed) segment.
    let (hit, hit_msg) = &stored[1];
    flip(&segs[0], find_in(&segs[0], hit_msg) + 40);

    let (spool, report) = Spool::open_with(dir.path(), opts.clone()).await.unwrap();
    assert_eq!((report.corrupt, report.discarded_partial), (1, 0));
    assert_eq!(report.recovered, 7);
    assert!(matches!(
        spool.envelope(&hit.id).await,
        Err(SpoolError::NotFound(_))
    ));
    assert!(matches!(
        spool.envelope(&stored[0].0.id).await,
        Err(SpoolError::NotFound(_))
    ));
    for (env, msg) in &stored[2..] {
        assert_eq!(&spool.envelope(&env.id).await.unwrap(), env);
        assert_eq!(&spool.message(&env.id).await.unwrap(), msg);
    }
    let aside: Vec<_> = fs::read_dir(dir.path().join("corrupt"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(aside, [segs[0].file_name().unwrap().to_str().unwrap()]);
    drop(spool);
    // The repair was durable: nothing is damaged any more, nothing finished came back.
    let (spool, report) = Spool::open_with(dir.path(), opts).await.unwrap();
    assert_eq!(
        (report.recovered, report.corrupt, report.discarded_partial),
        (7, 0, 0)
    );
    assert!(matches!(
        spool.envelope(&stored[0].0.id).await,
        Err(SpoolError::NotFound(_))
    ));
}

#[tokio::test]
async fn segments_are_reclaimed_once_everything_in_them_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments(2500);
    let (spool, _) = Spool::open_with(dir.path(), opts.clone()).await.unwrap();
    let mut stored = Vec::new();
    for seed in 0..20 {
        stored.push(store_one(&spool, &["r@example.com"], seed).await);
    }
    assert!(segments(dir.path()).len() >= 5);
    for (env, _) in &stored {
        spool.remove(&env.id).await.unwrap();
    }
    spool.sync().await.unwrap();
    // Only the active segment (holding the last Done records) is left.
    let left = segments(dir.path());
    assert!(left.len() <= 2, "{left:?}");
    assert!(spool.stats().reclaimed >= 3, "{:?}", spool.stats());
    drop(spool);
    let (spool, report) = Spool::open_with(dir.path(), opts).await.unwrap();
    assert_eq!((report.recovered, report.corrupt), (0, 0));
    assert!(spool.list().await.is_empty());
}

#[tokio::test]
async fn a_long_deferred_message_is_relocated_instead_of_pinning_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments(8 * 1024);
    let (spool, _) = Spool::open_with(dir.path(), opts.clone()).await.unwrap();
    let mut deferred = envelope(spool.new_id(), &["slow@example.com"]);
    let deferred_msg = body(100, 7);
    spool
        .store(&deferred, deferred_msg.clone().into())
        .await
        .unwrap();
    let first = segments(dir.path())[0].clone();
    // Traffic that comes and goes, until the first segment is sealed and mostly dead.
    for round in 0..40u8 {
        let (env, _) = store_one(&spool, &["r@example.com"], round).await;
        spool.remove(&env.id).await.unwrap();
        if round == 5 {
            deferred.recipients[0].attempts = 1;
            spool.update(&deferred).await.unwrap();
        }
    }
    spool.sync().await.unwrap();
    let s = spool.stats();
    assert!(s.relocated >= 1, "{s:?}");
    assert!(!first.exists(), "the first segment was reclaimed");
    assert_eq!(spool.envelope(&deferred.id).await.unwrap(), deferred);
    assert_eq!(spool.message(&deferred.id).await.unwrap(), deferred_msg);
    drop(spool);
    let (spool, report) = Spool::open_with(dir.path(), opts).await.unwrap();
    assert_eq!((report.recovered, report.corrupt), (1, 0));
    assert_eq!(spool.envelope(&deferred.id).await.unwrap(), deferred);
    assert_eq!(spool.message(&deferred.id).await.unwrap(), deferred_msg);
}

#[tokio::test]
async fn the_previous_layout_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    fs::create_dir(&queue).unwrap();
    let mut old = Vec::new();
    for seed in 0..2 {
        let env = envelope(MessageId::generate(), &["r@example.com"]);
        let msg = body(200, seed);
        let record = legacy::EnvelopeRecord {
            message_len: msg.len() as u64,
            message_crc32: crc32fast::hash(&msg),
            envelope: env.clone(),
        };
        fs::write(queue.join(format!("{}.msg", env.id)), &msg).unwrap();
        fs::write(
            queue.join(format!("{}.env", env.id)),
            legacy::encode(&record),
        )
        .unwrap();
        old.push((env, msg));
    }
    // An unfinished write and a message whose envelope never landed: never acknowledged.
    let orphan = MessageId::generate();
    fs::write(queue.join(format!("{orphan}.msg.3.tmp")), b"Subject: half").unwrap();
    fs::write(queue.join(format!("{orphan}.msg")), body(10, 1)).unwrap();

    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(
        (
            report.migrated,
            report.recovered,
            report.discarded_partial,
            report.corrupt
        ),
        (2, 2, 2, 0)
    );
    assert!(!queue.exists(), "the old files are gone");
    for (env, msg) in &old {
        assert_eq!(&spool.envelope(&env.id).await.unwrap(), env);
        assert_eq!(&spool.message(&env.id).await.unwrap(), msg);
    }
    drop(spool);
    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!((report.migrated, report.recovered), (0, 2));
    assert_eq!(spool.list().await.len(), 2);
}

#[tokio::test]
async fn updates_and_removals_are_durable_after_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (mut kept, gone) = {
        let (spool, _) = Spool::open(dir.path()).await.unwrap();
        let (mut kept, _) = store_one(&spool, &["a@example.com"], 0).await;
        let (gone, _) = store_one(&spool, &["b@example.com"], 1).await;
        kept.recipients[0].status = RecipientStatus::Delivered;
        spool.update(&kept).await.unwrap();
        spool.remove(&gone.id).await.unwrap();
        // No sync and no store after them: closing the spool makes them durable.
        (kept, gone)
    };
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(spool.envelope(&kept.id).await.unwrap(), kept);
    assert!(matches!(
        spool.envelope(&gone.id).await,
        Err(SpoolError::NotFound(_))
    ));
    kept.recipients[0].attempts = 9;
    spool.update(&kept).await.unwrap();
    // Without a store to carry it, the timer does.
    let shared = spool.inner.shared.clone();
    until("the deferred fdatasync", || {
        shared.stats.file_syncs.load(Ordering::Relaxed) >= 1
    })
    .await;
}

#[tokio::test]
async fn a_large_mapped_message_gets_its_own_segment_and_is_read_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open_with(dir.path(), small_segments(64 * 1024))
        .await
        .unwrap();
    let (small, _) = store_one(&spool, &["r@example.com"], 0).await;
    // As a session hands over a message it spilled to a file.
    let big = body(400 * 1024, 3);
    let spill = dir.path().join("spill");
    fs::write(&spill, &big).unwrap();
    let map = unsafe { memmap2::Mmap::map(&fs::File::open(&spill).unwrap()).unwrap() };
    let mapped = MessageBytes::mapped(std::sync::Arc::new(map), 0, big.len()).unwrap();
    let env = envelope(spool.new_id(), &["r@example.com"]);
    spool.store(&env, mapped).await.unwrap();
    let (after, _) = store_one(&spool, &["r@example.com"], 1).await;
    assert_eq!(segments(dir.path()).len(), 3);
    let read = spool.message(&env.id).await.unwrap();
    assert!(read.is_mapped());
    assert_eq!(read, big);
    assert!(!spool.message(&small.id).await.unwrap().is_mapped());
    assert_eq!(spool.list().await.len(), 3);
    assert_eq!(spool.envelope(&after.id).await.unwrap(), after);
}

#[tokio::test]
async fn damage_before_the_end_of_the_last_segment_is_damage_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let stored = {
        let (spool, _) = Spool::open(dir.path()).await.unwrap();
        let mut stored = Vec::new();
        for seed in 0..3 {
            stored.push(store_one(&spool, &["r@example.com"], seed).await);
        }
        stored
    };
    let seg = segments(dir.path()).pop().unwrap();
    flip(&seg, find_in(&seg, &stored[1].1) + 30);
    // Records after the bad one were acknowledged: cutting there would lose them.
    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(
        (report.recovered, report.corrupt, report.discarded_partial),
        (2, 1, 0)
    );
    for i in [0, 2] {
        let (env, msg) = &stored[i];
        assert_eq!(&spool.message(&env.id).await.unwrap(), msg);
    }
    assert!(dir
        .path()
        .join("corrupt")
        .join(seg.file_name().unwrap())
        .exists());
    drop(spool);
    let (_, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!((report.recovered, report.corrupt), (2, 0));
}

fn with_commit_delay(delay: Duration) -> SpoolOptions {
    SpoolOptions {
        commit_delay: delay,
        ..SpoolOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waits_for_an_announced_message_and_shares_its_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough that only the announcement ending can explain an early commit.
    let (spool, _) = Spool::open_with(dir.path(), with_commit_delay(Duration::from_secs(60)))
        .await
        .unwrap();
    let arriving = spool.announce();
    let first = {
        let spool = spool.clone();
        tokio::spawn(async move { store_one(&spool, &["a@example.com"], 1).await })
    };
    let shared = spool.inner.shared.clone();
    until("the first store queued", || {
        shared.in_flight.load(Ordering::Acquire) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !first.is_finished(),
        "the batch must wait for the announced message"
    );
    // The announced message's store joins the queue before its Arrival ends.
    let second = {
        let spool = spool.clone();
        tokio::spawn(async move { store_one(&spool, &["b@example.com"], 2).await })
    };
    until("the second store queued", || {
        shared.in_flight.load(Ordering::Acquire) == 2
    })
    .await;
    drop(arriving);
    first.await.unwrap();
    second.await.unwrap();
    let s = spool.stats();
    assert_eq!(
        (s.stored, s.file_syncs, s.commits, s.max_commit),
        (2, 1, 1, 2),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_announcement_no_wait_and_an_announcement_without_a_store_stops_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open_with(dir.path(), with_commit_delay(Duration::from_secs(60)))
        .await
        .unwrap();
    // Alone: committed at once (a 60 s delay would time the test out).
    tokio::time::timeout(
        Duration::from_secs(20),
        store_one(&spool, &["a@example.com"], 1),
    )
    .await
    .expect("a lone store does not wait for the commit delay");
    // A message announced and then refused never sends a store; the waiting batch sees the
    // count drop and commits without it.
    let refused = spool.announce();
    let waiting = {
        let spool = spool.clone();
        tokio::spawn(async move { store_one(&spool, &["b@example.com"], 2).await })
    };
    let shared = spool.inner.shared.clone();
    until("the store queued", || {
        shared.in_flight.load(Ordering::Acquire) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    drop(refused);
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the wait ends with the announcement")
        .unwrap();
    assert_eq!(spool.stats().stored, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_delay_bounds_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(300);
    let (spool, _) = Spool::open_with(dir.path(), with_commit_delay(delay))
        .await
        .unwrap();
    // A client that announced a message and then stalls mid-DATA holds nobody past the delay.
    let _stalled = spool.announce();
    let started = Instant::now();
    store_one(&spool, &["a@example.com"], 1).await;
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert_eq!(spool.stats().file_syncs, 1);
}
