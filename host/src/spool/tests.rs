use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::*;

fn envelope(id: MessageId, rcpts: &[&str]) -> Envelope {
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
        trace: None,
    }
}

fn body(n: usize, seed: u8) -> Vec<u8> {
    let mut b = b"Subject: test\r\n\r\n".to_vec();
    b.extend((0..n).map(|i| b'a' + ((i as u8).wrapping_add(seed) % 26)));
    b.extend_from_slice(b"\r\n");
    b
}

fn queue_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("queue"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

async fn store_one(spool: &Spool, rcpts: &[&str], seed: u8) -> (Envelope, Vec<u8>) {
    let env = envelope(spool.new_id(), rcpts);
    let msg = body(300, seed);
    spool.store(&env, msg.clone().into()).await.unwrap();
    (env, msg)
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
    let id = &env.id.0;
    assert_eq!(
        queue_files(dir.path()),
        [format!("{id}.env"), format!("{id}.msg")]
    );
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
    assert_eq!((s.file_syncs, s.dir_syncs), (2, 1));
}

#[tokio::test]
async fn open_creates_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("var/spool");
    let (spool, report) = Spool::open(&spool_dir).await.unwrap();
    assert_eq!(report.recovered, 0);
    assert!(spool_dir.join("queue").is_dir() && spool_dir.join("corrupt").is_dir());
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

#[tokio::test]
async fn partial_writes_are_discarded_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, _) = {
        let (spool, _) = Spool::open(dir.path()).await.unwrap();
        store_one(&spool, &["r@example.com"], 0).await
    };
    let q = dir.path().join("queue");
    let a = MessageId::generate().0;
    let b = MessageId::generate().0;
    // A message temp cut short, an envelope temp that is garbage, and a message that was
    // renamed into place but whose envelope never was.
    fs::write(q.join(format!("{a}.msg.7.tmp")), b"Subject: half").unwrap();
    fs::write(q.join(format!("{a}.env.7.tmp")), b"{\"message_len\":").unwrap();
    fs::write(q.join(format!("{b}.msg")), body(100, 3)).unwrap();

    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(
        (report.recovered, report.discarded_partial, report.corrupt),
        (1, 3, 0)
    );
    assert_eq!(spool.list().await.len(), 1);
    let k = &kept.id.0;
    assert_eq!(
        queue_files(dir.path()),
        [format!("{k}.env"), format!("{k}.msg")]
    );
}

#[tokio::test]
async fn corrupt_envelopes_are_moved_aside_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (truncated, garbage, orphan, good) = {
        let (spool, _) = Spool::open(dir.path()).await.unwrap();
        (
            store_one(&spool, &["r@example.com"], 0).await.0,
            store_one(&spool, &["r@example.com"], 1).await.0,
            store_one(&spool, &["r@example.com"], 2).await.0,
            store_one(&spool, &["r@example.com"], 3).await.0,
        )
    };
    let q = dir.path().join("queue");
    let env_of = |e: &Envelope| q.join(format!("{}.env", e.id));
    let bytes = fs::read(env_of(&truncated)).unwrap();
    fs::write(env_of(&truncated), &bytes[..bytes.len() - 5]).unwrap();
    fs::write(env_of(&garbage), b"\x00\x01 not an envelope\n").unwrap();
    fs::remove_file(q.join(format!("{}.msg", orphan.id))).unwrap();

    let (spool, report) = Spool::open(dir.path()).await.unwrap();
    assert_eq!(
        (report.recovered, report.discarded_partial, report.corrupt),
        (1, 0, 3)
    );
    assert_eq!(spool.list().await, vec![good.clone()]);
    let mut aside: Vec<String> = fs::read_dir(dir.path().join("corrupt"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    aside.sort();
    let mut expected = vec![
        format!("{}.env", truncated.id),
        format!("{}.msg", truncated.id),
        format!("{}.env", garbage.id),
        format!("{}.msg", garbage.id),
        format!("{}.env", orphan.id),
    ];
    expected.sort();
    assert_eq!(aside, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stores_are_all_durable_and_share_fsyncs() {
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
    assert!(
        stats.dir_syncs < 400,
        "no directory fsync was shared: {stats:?}"
    );
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
    let msg_file = dir.path().join(format!("queue/{}.msg", env.id));
    let inode = fs::metadata(&msg_file).unwrap().ino();
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
    assert_eq!(fs::metadata(&msg_file).unwrap().ino(), inode);

    let unknown = envelope(MessageId::generate(), &["x@example.com"]);
    assert!(matches!(
        spool.update(&unknown).await,
        Err(SpoolError::NotFound(_))
    ));
    assert_eq!(queue_files(dir.path()).len(), 2, "no temp file left behind");
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
async fn remove_deletes_both_files() {
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
    let k = &kept.id.0;
    assert_eq!(
        queue_files(dir.path()),
        [format!("{k}.env"), format!("{k}.msg")]
    );
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
async fn cli_reads_and_deletes_while_the_relay_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    let (a, msg_a) = store_one(&spool, &["a@example.com"], 0).await;
    let (b, _) = store_one(&spool, &["b@example.com"], 1).await;
    // An unfinished write must not show up to readers.
    fs::write(dir.path().join(format!("queue/{}.env.9.tmp", a.id)), b"x").unwrap();

    assert_eq!(read_queue(dir.path()).await.unwrap(), spool.list().await);
    assert_eq!(read_envelope(dir.path(), &a.id).await.unwrap(), a);
    assert_eq!(read_message(dir.path(), &a.id).await.unwrap(), msg_a);

    delete_by_id(dir.path(), &b.id).await.unwrap();
    assert!(matches!(
        delete_by_id(dir.path(), &b.id).await,
        Err(SpoolError::NotFound(_))
    ));
    let escape = MessageId("../../etc/passwd".into());
    assert!(matches!(
        delete_by_id(dir.path(), &escape).await,
        Err(SpoolError::NotFound(_))
    ));
    assert_eq!(read_queue(dir.path()).await.unwrap(), vec![a.clone()]);

    // The relay notices on its next touch and does not resurrect the envelope.
    assert!(matches!(
        spool.message(&b.id).await,
        Err(SpoolError::NotFound(_))
    ));
    assert!(matches!(
        spool.update(&b).await,
        Err(SpoolError::NotFound(_))
    ));
    assert!(!dir.path().join(format!("queue/{}.env", b.id)).exists());
    assert_eq!(spool.list().await, vec![a]);
}

#[tokio::test]
async fn message_corruption_is_reported_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    let (env, mut msg) = store_one(&spool, &["a@example.com"], 0).await;
    msg[20] ^= 0x20;
    fs::write(dir.path().join(format!("queue/{}.msg", env.id)), &msg).unwrap();
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
        Err(SpoolError::Write { path, source }) => {
            assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
            assert!(path.ends_with(format!("{}.msg", dup.id)));
        }
        other => panic!("duplicate store: {other:?}"),
    }
    assert_eq!(queue_files(dir.path()).len(), 2);

    // The invalid id never reached the committer.
    assert_eq!(spool.stats().ops, 2);
}

#[tokio::test]
async fn an_io_error_mid_store_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).await.unwrap();
    // Stand-in for ENOSPC/EIO on the second file: the first store of a fresh spool uses
    // sequence 1, and a directory squatting on its envelope temp name makes that create fail
    // after the message temp was already written and synced.
    let env = envelope(spool.new_id(), &["a@example.com"]);
    let blocker = dir.path().join(format!("queue/{}.env.1.tmp", env.id));
    fs::create_dir(&blocker).unwrap();
    match spool
        .store(&env, b"Subject: x\r\n\r\nbody\r\n"[..].into())
        .await
    {
        Err(SpoolError::Write { path, .. }) => assert_eq!(path, blocker),
        other => panic!("store over a blocked temp name: {other:?}"),
    }
    fs::remove_dir(&blocker).unwrap();
    assert_eq!(queue_files(dir.path()), Vec::<String>::new());
    assert!(matches!(
        spool.envelope(&env.id).await,
        Err(SpoolError::NotFound(_))
    ));
}
