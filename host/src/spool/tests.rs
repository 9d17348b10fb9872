use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

pub(super) fn envelope(id: MessageId, rcpts: &[&str]) -> Envelope {
    Envelope {
        id,
        received_at: 1_700_000_000,
        mail_from: Some("sender@example.org".into()),
        recipients: rcpts
            .iter()
            .map(|r| Recipient::pending(r.to_string()))
            .collect(),
        client: ClientInfo {
            ip: "127.0.0.1".parse().unwrap(),
            helo: "client.example".into(),
            auth_user: None,
            tls: false,
            origin: Default::default(),
        },
        eight_bit: false,
        smtputf8: false,
        ret_headers_only: false,
        envid: None,
        size: 0,
        listener: String::new(),
        annotations: Vec::new(),
        held: false,
        trace: None,
    }
}

pub(super) fn body(n: usize, seed: u8) -> Vec<u8> {
    let mut b = b"Subject: test\r\n\r\n".to_vec();
    b.extend((0..n).map(|i| b'a' + ((i as u8).wrapping_add(seed) % 26)));
    b.extend_from_slice(b"\r\n");
    b
}

/// The segment files, oldest first.
pub(super) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
}

pub(super) async fn store_one(spool: &Spool, rcpts: &[&str], seed: u8) -> (Envelope, Vec<u8>) {
    let env = envelope(spool.new_id(), rcpts);
    let msg = body(300, seed);
    spool.store(&env, msg.clone().into()).await.unwrap();
    (env, msg)
}

/// Flips one bit at `offset` of `path`.
pub(super) fn flip(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

/// Where `needle` starts in `path`.
pub(super) fn find_in(path: &Path, needle: &[u8]) -> usize {
    let bytes = fs::read(path).unwrap();
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the bytes are in the file")
}

#[tokio::test]
async fn store_then_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(report.recovered, 0);
    let (env, msg) = store_one(&spool, &["a@example.com", "b@example.com"], 1).await;
    assert_eq!(spool.envelope(&env.id).await.unwrap(), env);
    assert_eq!(spool.message(&env.id).await.unwrap(), msg);
    assert_eq!(spool.list().await, vec![env.clone()]);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert!(segs[0].ends_with("log/0000000000000001.seg"), "{segs:?}");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&segs[0]), 0o600);
    assert_eq!(mode(&dir.path().join("log")), 0o700);
    assert_eq!(mode(dir.path()), 0o700);
    let missing = MessageId::generate();
    assert!(matches!(
        spool.envelope(&missing).await,
        Err(SpoolError::NotFound(_))
    ));
    assert!(matches!(
        spool.message(&missing).await,
        Err(SpoolError::NotFound(_))
    ));
    let s = spool.stats();
    // One fdatasync for the record, one directory fsync for the new segment.
    assert_eq!(
        (s.file_syncs, s.dir_syncs, s.stored, s.commits),
        (1, 1, 1, 1)
    );
}

#[tokio::test]
async fn open_creates_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("var/spool");
    let (spool, report) = Spool::open(&spool_dir).await.unwrap();
    assert_eq!(report.recovered, 0);
    assert!(spool_dir.join("log").is_dir() && spool_dir.join("corrupt").is_dir());
    assert_eq!(spool.dir(), spool_dir);
    assert_eq!(read_queue(&spool_dir).await.unwrap(), vec![]);
}

#[tokio::test]
async fn reopen_recovers_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut stored = Vec::new();
    {
        let (spool, _) = Spool::open(dir.path()).await.unwrap();
        for seed in 0..5 {
            stored.push(store_one(&spool, &["r@example.com"], seed).await);
        }
    }
    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(
        (report.recovered, report.discarded_partial, report.corrupt),
        (5, 0, 0)
    );
    let listed = spool.list().await;
    assert_eq!(
        listed,
        stored.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>()
    );
    for (env, msg) in &stored {
        assert_eq!(&spool.message(&env.id).await.unwrap(), msg);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stores_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    let tasks: Vec<_> = (0..40u8)
        .map(|t| {
            let spool = spool.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..10u8 {
                    out.push(store_one(&spool, &["r@example.com"], t ^ i).await);
                }
                out
            })
        })
        .collect();
    let mut stored = Vec::new();
    for t in tasks {
        stored.extend(t.await.unwrap());
    }
    let stats = spool.stats();
    assert_eq!(stats.ops, 400);
    assert_eq!(stats.stored, 400);
    drop(spool);

    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(report.recovered, 400);
    for (env, msg) in &stored {
        assert_eq!(&spool.envelope(&env.id).await.unwrap(), env);
        assert_eq!(&spool.message(&env.id).await.unwrap(), msg);
    }
}

#[tokio::test]
async fn updates_survive_reopen_without_touching_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let (mut env, msg) = {
        let (spool, _) = Spool::open(dir.path()).await.unwrap();
        store_one(&spool, &["a@example.com", "b@example.com"], 0).await
    };
    let seg_len = |d: &Path| fs::metadata(&segments(d)[0]).unwrap().len();
    let before = seg_len(dir.path());
    {
        let (spool, _) = Spool::open(dir.path()).await.unwrap();
        env.recipients[0].status = RecipientStatus::Delivered;
        env.recipients[0].last_reply = Some("250 2.0.0 ok".into());
        env.recipients[1].attempts = 1;
        env.recipients[1].next_attempt = 1_700_000_600;
        spool.update(&env).await.unwrap();
        env.recipients[1].attempts = 2;
        spool.update(&env).await.unwrap();
        assert_eq!(spool.envelope(&env.id).await.unwrap(), env);
    }
    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(report.recovered, 1);
    assert_eq!(spool.envelope(&env.id).await.unwrap(), env);
    assert_eq!(spool.message(&env.id).await.unwrap(), msg);
    // Two envelope records were appended; the message was not written again.
    let grown = seg_len(dir.path()) - before;
    assert!(grown < 2 * msg.len() as u64 + 1000, "grew by {grown}");

    let unknown = envelope(MessageId::generate(), &["x@example.com"]);
    assert!(matches!(
        spool.update(&unknown).await,
        Err(SpoolError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_updates_of_one_message_keep_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    let (env, _) = store_one(&spool, &["a@example.com"], 0).await;
    // Each round issues two updates at once; the one issued second must win.
    for round in 1..=20u32 {
        let mut older = env.clone();
        older.recipients[0].attempts = round * 2 - 1;
        let mut newer = env.clone();
        newer.recipients[0].attempts = round * 2;
        let first = spool.update(&older);
        let second = spool.update(&newer);
        let (a, b) = tokio::join!(first, second);
        a.unwrap();
        b.unwrap();
        assert_eq!(spool.envelope(&env.id).await.unwrap(), newer);
    }
    drop(spool);
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(
        spool.envelope(&env.id).await.unwrap().recipients[0].attempts,
        40
    );
}

#[tokio::test]
async fn removed_messages_stay_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    let (gone, _) = store_one(&spool, &["a@example.com"], 0).await;
    let (kept, _) = store_one(&spool, &["a@example.com"], 1).await;
    spool.remove(&gone.id).await.unwrap();
    assert!(matches!(
        spool.envelope(&gone.id).await,
        Err(SpoolError::NotFound(_))
    ));
    assert!(matches!(
        spool.remove(&gone.id).await,
        Err(SpoolError::NotFound(_))
    ));
    assert!(matches!(
        spool.update(&gone).await,
        Err(SpoolError::NotFound(_))
    ));
    drop(spool);
    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(report.recovered, 1);
    assert_eq!(spool.list().await, vec![kept]);
}

#[test]
fn ids_are_unique_across_threads() {
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                (0..20_000)
                    .map(|_| MessageId::generate())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = HashSet::new();
    for t in threads {
        for id in t.join().unwrap() {
            assert!(all.insert(id.clone()), "duplicate id {id}");
        }
    }
    assert_eq!(all.len(), 160_000);
}

#[tokio::test]
async fn a_second_relay_cannot_open_the_same_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (_spool, _) = Spool::open(dir.path()).await.unwrap();
    match Spool::open(dir.path()).await {
        Err(SpoolError::Write { path, .. }) => assert!(path.ends_with("owner.lock")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("second open succeeded"),
    }
}

#[tokio::test]
async fn cli_reads_while_the_relay_runs_and_deletes_only_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    let (a, msg_a) = store_one(&spool, &["a@example.com"], 0).await;
    let (b, _) = store_one(&spool, &["b@example.com"], 1).await;
    let mut a2 = a.clone();
    a2.recipients[0].attempts = 3;
    spool.update(&a2).await.unwrap();
    // A write in progress (a torn record at the end of the active segment) is not seen.
    let active = segments(dir.path()).pop().unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&active).unwrap();
    std::io::Write::write_all(&mut f, b"WRrc\x01 torn").unwrap();

    assert_eq!(read_queue(dir.path()).await.unwrap(), spool.list().await);
    assert_eq!(read_envelope(dir.path(), &a.id).await.unwrap(), a2);
    assert_eq!(read_message(dir.path(), &a.id).await.unwrap(), msg_a);
    let escape = MessageId("../../etc/passwd".into());
    assert!(matches!(
        read_envelope(dir.path(), &escape).await,
        Err(SpoolError::NotFound(_))
    ));

    match delete_by_id(dir.path(), &b.id).await {
        Err(SpoolError::Write { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::WouldBlock);
            assert!(source.to_string().contains("running relay"), "{source}");
        }
        other => panic!("delete beside a running relay: {other:?}"),
    }
    assert_eq!(spool.list().await.len(), 2);
    drop(spool);

    delete_by_id(dir.path(), &b.id).await.unwrap();
    assert!(matches!(
        delete_by_id(dir.path(), &b.id).await,
        Err(SpoolError::NotFound(_))
    ));
    assert!(matches!(
        delete_by_id(dir.path(), &escape).await,
        Err(SpoolError::NotFound(_))
    ));
    assert_eq!(read_queue(dir.path()).await.unwrap(), vec![a2.clone()]);
    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(report.recovered, 1);
    assert_eq!(spool.list().await, vec![a2]);
}

#[tokio::test]
async fn message_corruption_is_reported_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    let (env, msg) = store_one(&spool, &["a@example.com"], 0).await;
    let seg = &segments(dir.path())[0];
    flip(seg, find_in(seg, &msg) + 20);
    assert!(matches!(
        spool.message(&env.id).await,
        Err(SpoolError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn failed_writes_report_the_path_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    let bad = envelope(MessageId("no/slashes".into()), &["a@example.com"]);
    assert!(matches!(
        spool.store(&bad, b"x"[..].into()).await,
        Err(SpoolError::Write { .. })
    ));
    let (dup, msg) = store_one(&spool, &["a@example.com"], 0).await;
    match spool.store(&dup, msg.clone().into()).await {
        Err(SpoolError::Write { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
        }
        other => panic!("duplicate store: {other:?}"),
    }
    assert_eq!(spool.list().await, vec![dup]);

    // The invalid id never reached the committer.
    assert_eq!(spool.stats().ops, 2);
}
