//! A spool on a small tmpfs that fills up (as a disk does, under a mail flood or a runaway
//! log): recipients already delivered must not be delivered again because their new state
//! could not be written, and a bounce that could not be stored must not count as sent.
//! Needs root (it mounts a tmpfs); skipped otherwise.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use super::*;

/// A tmpfs mounted on `<dir>/spool`, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    filler: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let path = dir.join("spool");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert_success("mount -t tmpfs", &out);
        let filler = path.join("filler");
        Tmpfs { path, filler }
    }

    /// Fills the file system up, then gives back `leave` bytes.
    fn fill(&self, leave: u64) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(leave)).unwrap();
    }

    fn free(&self) {
        std::fs::remove_file(&self.filler).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A relay whose spool is a 4 MiB tmpfs, whose retries wait an hour (attempts happen when the
/// test flushes), routing `dest.test` and `origin.test` to a next hop that is not up yet and
/// `dead.test` nowhere; with one message sent and its first attempt (nobody listening, all
/// deferred) recorded. `None` without root.
struct Scene {
    // Dropped in this order: the relay, then the mount, then the directory.
    relay: RelayProcess,
    tmpfs: Tmpfs,
    config: PathBuf,
    next_hop_port: u16,
    dir: tempfile::TempDir,
}

impl Scene {
    fn queued(to: &[&str], message: &str) -> Option<Scene> {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (port, next_hop_port) = (free_port(), free_port());
        let tmpfs = Tmpfs::mount(dir.path(), "4m");
        let config = write_config(
            dir.path(),
            port,
            &format!(
                "[relay]\nrelay_networks = [\"127.0.0.0/8\"]\n{}{}",
                route(&["dest.test", "origin.test"], "127.0.0.1", next_hop_port),
                route(&["dead.test"], "127.0.0.1", free_port()),
            ),
        );
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("initial_interval = \"1s\"", "initial_interval = \"1h\"")
            .replace("max_interval = \"2s\"", "max_interval = \"2h\"");
        std::fs::write(&config, text).unwrap();
        let relay = RelayProcess::start(&config, &[port]);
        send(&Mail {
            port,
            from: "a@origin.test",
            to,
            message,
            ..Default::default()
        });
        let scene = Scene {
            relay,
            tmpfs,
            config,
            next_hop_port,
            dir,
        };
        wait_for("the first attempt", Duration::from_secs(20), || {
            scene.recipient(to[0]).is_some_and(|r| r.attempts == 1)
        });
        Some(scene)
    }

    fn recipient(&self, address: &str) -> Option<wasmrelay::spool::Recipient> {
        queued(self.dir.path())
            .into_iter()
            .flat_map(|e| e.recipients)
            .find(|r| r.address == address)
    }

    /// Starts the next hop on its port.
    fn next_hop(&self, args: &[&str]) -> Downstream {
        let port = self.next_hop_port.to_string();
        let mut all = vec!["--port", port.as_str()];
        all.extend_from_slice(args);
        Downstream::start("127.0.0.1", &all)
    }

    /// Flushes and waits until the relay logged `needle` `n` times in all.
    fn flush_until(&self, needle: &str, n: usize) {
        flush(&self.config);
        wait_for(
            &format!("{n} × {needle:?}"),
            Duration::from_secs(20),
            || self.relay.log().matches(needle).count() >= n,
        );
    }
}

#[test]
fn a_full_spool_does_not_deliver_twice() {
    let Some(scene) = Scene::queued(
        &["user@dest.test", "user@dead.test"],
        "From: a@origin.test\r\nSubject: once\r\n\r\nexactly once\r\n",
    ) else {
        return;
    };
    scene.tmpfs.fill(0);
    let next_hop = scene.next_hop(&[]);
    flush(&scene.config);
    next_hop.wait_for(1, 20);
    wait_for("the failed write", Duration::from_secs(20), || {
        scene.relay.log().contains("cannot record delivery state")
    });
    // Asked again and again while the disk is full: the delivery is not repeated.
    for n in 2..=4 {
        scene.flush_until("cannot record delivery state", n);
    }
    assert_eq!(next_hop.messages().len(), 1, "{}", scene.relay.log());
    // Room again: the state that waited in memory is written, and still nothing is re-sent.
    scene.tmpfs.free();
    flush(&scene.config);
    wait_for("the recorded delivery", Duration::from_secs(20), || {
        scene
            .recipient("user@dest.test")
            .is_some_and(|r| r.status == wasmrelay::spool::RecipientStatus::Delivered)
    });
    let attempts = || scene.recipient("user@dead.test").unwrap().attempts;
    let before = attempts();
    flush(&scene.config);
    wait_for("another attempt", Duration::from_secs(20), || {
        attempts() > before
    });
    assert_eq!(next_hop.messages().len(), 1, "{}", scene.relay.log());
}

#[test]
fn a_bounce_that_could_not_be_stored_is_not_counted_as_sent() {
    // Big enough that its bounce (which carries it) cannot fit where an envelope still does.
    let body = "x".repeat(76) + "\r\n";
    let message = format!(
        "From: a@origin.test\r\nSubject: bounce me\r\n\r\n{}",
        body.repeat(8 * 1024)
    );
    let Some(scene) = Scene::queued(&["reject-me@dest.test", "user@dead.test"], &message) else {
        return;
    };
    scene.tmpfs.fill(128 * 1024);
    let next_hop = scene.next_hop(&["--reject-prefix", "reject-"]);
    scene.flush_until("cannot spool DSN", 1);
    wait_for("the envelope update", Duration::from_secs(20), || {
        scene
            .recipient("user@dead.test")
            .is_some_and(|r| r.attempts == 2)
    });
    let r = scene.recipient("reject-me@dest.test").unwrap();
    assert_eq!(
        r.status,
        wasmrelay::spool::RecipientStatus::Pending,
        "{}",
        scene.relay.log()
    );
    // Room again: the recipient fails again, and this time the sender hears about it.
    scene.tmpfs.free();
    flush(&scene.config);
    let dsn = &next_hop.wait_for(1, 20)[0];
    assert_eq!(dsn.rcpts(), ["a@origin.test"]);
    assert!(dsn
        .text()
        .contains("Final-Recipient: rfc822; reject-me@dest.test"));
    assert!(dsn.text().contains("Status: 5.1.1"));
}
