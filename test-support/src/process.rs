//! Child processes of the harness: killed and reaped on drop, and two race-free ways to learn
//! the port a child listens on: it says so (`PORT <n>` from the Python helpers, a log line
//! from the relay), or the kernel does (`/proc`), for a program that cannot say.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};

/// A child process, killed (SIGKILL) and reaped when dropped.
pub(crate) struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Starts `python3 scripts/<script> args…` and reads its first line, `PORT <n>`: the script
/// bound port 0 (or the port it was given) and holds it. `Err` carries what it printed
/// instead, once the process has exited (it could not bind, or a module is missing).
pub(crate) fn python_server(script: &str, args: &[&str]) -> Result<(ChildGuard, u16), String> {
    let mut child = ChildGuard(
        Command::new("python3")
            .arg(crate::script(script))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs"),
    );
    let stdout = child.0.stdout.take().expect("a piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).ok();
    match line.trim().strip_prefix("PORT ").map(str::parse) {
        Some(Ok(port)) => Ok((child, port)),
        _ => {
            let status = child.0.wait().ok();
            Err(format!(
                "{script} {args:?} did not start ({status:?}): {line:?}"
            ))
        }
    }
}

/// Whether the tests run as root: what mounting a file system or becoming another user needs.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `signal` to process `pid`.
pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill has no memory preconditions; a stale pid at worst signals nothing.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// The IPv4 TCP address process `pid` listens on, if it holds exactly one listening socket:
/// the inodes of its open sockets (`/proc/<pid>/fd`) matched against the listening sockets of
/// its network namespace (`/proc/<pid>/net/tcp`). `None` while it has not bound yet.
pub(crate) fn listening_addr(pid: u32) -> Option<SocketAddr> {
    let inodes: HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    let mut found = listening_sockets(&table)
        .into_iter()
        .filter(|(_, inode)| inodes.contains(inode))
        .map(|(addr, _)| addr);
    let addr = found.next()?;
    assert!(
        found.next().is_none(),
        "process {pid} listens on more than one socket"
    );
    Some(addr)
}

/// `(local address, inode)` of each socket in state LISTEN in a `/proc/net/tcp` table.
fn listening_sockets(table: &str) -> Vec<(SocketAddr, u64)> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&LISTEN) {
                return None;
            }
            let (ip, port) = fields.get(1)?.split_once(':')?;
            // The kernel prints the address as the native-endian value of the network-order
            // word, and the port already in host order.
            let ip = Ipv4Addr::from(u32::from_be(u32::from_str_radix(ip, 16).ok()?));
            let port = u16::from_str_radix(port, 16).ok()?;
            let inode = fields.get(9)?.parse().ok()?;
            Some((SocketAddr::from((ip, port)), inode))
        })
        .collect()
}

/// What each thread of process `pid` is doing, for a failure message: its state and kernel
/// wait channel from `/proc`, and a backtrace per thread when `gdb` is installed. Best effort:
/// what cannot be read is said, not fatal.
pub(crate) fn thread_dump(pid: u32) -> String {
    let mut out = String::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    for task in tasks.into_iter().flatten().flatten() {
        let dir = task.path();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        // `stat` is "tid (comm) state ...": the state is the field after the closing paren.
        let stat = read("stat");
        let state = stat.rsplit_once(") ").map_or("?", |(_, rest)| &rest[..1]);
        out.push_str(&format!(
            "{} {:<16} state {state} wchan {}\n",
            task.file_name().to_string_lossy(),
            read("comm").trim(),
            read("wchan").trim(),
        ));
    }
    let gdb = Command::new("timeout")
        .args(["20", "gdb", "-batch", "-p", &pid.to_string()])
        .args(["-ex", "thread apply all bt 30"])
        .stdin(Stdio::null())
        .output();
    match gdb {
        Ok(o) if o.status.success() => out.push_str(&String::from_utf8_lossy(&o.stdout)),
        Ok(o) => out.push_str(&format!("(gdb: {})\n", o.status)),
        Err(e) => out.push_str(&format!("(no gdb: {e})\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:990F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12647 1 00000000f3b779b2 100 0 0 10 0
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1077 1 00000000d6105bbd 100 0 0 10 0
   2: 020200C0:9E1A 507100CB:01BB 01 00000000:00000000 00:00000000 00000000     0        0 5798 1 000000005f3c8fba 21 4 1 32 146
";

    #[test]
    #[cfg(target_endian = "little")]
    fn reads_listening_sockets_from_proc_net_tcp() {
        assert_eq!(
            listening_sockets(TABLE),
            [
                ("127.0.0.1:39183".parse().unwrap(), 12647),
                ("0.0.0.0:2024".parse().unwrap(), 1077),
            ]
        );
    }

    /// A child that listens on one socket (the test process itself may hold others, from
    /// tests running beside this one).
    #[test]
    fn finds_the_port_a_process_listens_on() {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket, time\n\
                 s = socket.socket()\n\
                 s.bind(('127.0.0.1', 0))\n\
                 s.listen()\n\
                 print(s.getsockname()[1], flush=True)\n\
                 time.sleep(60)",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the child prints its port");
        let found = listening_addr(child.id());
        child.kill().ok();
        child.wait().ok();
        assert_eq!(found, Some(([127, 0, 0, 1], port).into()));
    }

    #[test]
    fn a_thread_dump_names_each_thread_and_its_state() {
        let mut sleeper = ChildGuard(Command::new("sleep").arg("30").spawn().unwrap());
        let dump = thread_dump(sleeper.0.id());
        let first = dump.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("{} sleep", sleeper.0.id())),
            "{dump}"
        );
        // Running or asleep, depending on how far it got: a state letter either way.
        let state = first.split(" state ").nth(1).and_then(|s| s.chars().next());
        assert!(state.is_some_and(|c| "RSD".contains(c)), "{dump}");
        sleeper.0.kill().unwrap();
    }
}
