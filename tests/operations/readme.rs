//! The README's commands, as a newcomer pastes them: every line of every ```` ```sh ````
//! block is either run here or accounted for with the reason it is not (a new command
//! that is neither fails this test until it is).
//!
//! They run in a scratch directory laid out like the repository (a copy of `examples/`, the
//! repository's other entries, `target/` included, linked in), with two changes: `cargo run
//! --release --` and an installed `wasmrelay` are this build's binary, and the quickstart's
//! fixed ports 2525 and 2526 become ports held for this test, so that runs side by side do
//! not collide.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use wasmrelay_test_support::{assert_success, binary, wait_for, ReservedPort};

use super::repo;

const WAIT: Duration = Duration::from_secs(120);

/// Each command of the README's `sh` blocks, continuation lines joined and comments cut,
/// by block.
fn sh_blocks(readme: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let mut pending = String::new();
    for line in readme.lines() {
        let fence = line.trim_start().starts_with("```");
        match &mut current {
            None if fence && line.trim() == "```sh" => current = Some(Vec::new()),
            None => {}
            Some(block) if fence => {
                assert!(
                    pending.is_empty(),
                    "a continuation ends the block: {pending}"
                );
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                let code = match line.find(" #") {
                    Some(at) => &line[..at],
                    None if line.trim_start().starts_with('#') => "",
                    None => line,
                };
                let code = code.trim_end();
                if let Some(head) = code.strip_suffix('\\') {
                    pending.push_str(head.trim());
                    pending.push(' ');
                    continue;
                }
                pending.push_str(code.trim());
                if !pending.is_empty() {
                    block.push(std::mem::take(&mut pending));
                }
            }
        }
    }
    blocks
}

/// Words of a command, with `'...'` and `"..."` quoting.
fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in command.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                started = true;
            }
            None if c.is_whitespace() => {
                if started || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                started = false;
            }
            None => word.push(c),
        }
    }
    assert!(quote.is_none(), "unbalanced quotes: {command}");
    if started || !word.is_empty() {
        out.push(word);
    }
    out
}

/// A background process of a block; killed when the block ends.
struct Background {
    child: Child,
    log: PathBuf,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Scratch {
    dir: tempfile::TempDir,
    relay: ReservedPort,
    sink: ReservedPort,
    background: Vec<Background>,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        // The repository's other entries (workspace manifest, crates, target/) linked in.
        for entry in std::fs::read_dir(repo()).unwrap() {
            let name = entry.unwrap().file_name();
            if name == "examples" {
                copy_dir(&repo().join("examples"), &dir.path().join("examples"));
            } else if !name.to_string_lossy().starts_with('.') {
                std::os::unix::fs::symlink(repo().join(&name), dir.path().join(&name)).unwrap();
            }
        }
        let s = Scratch {
            dir,
            relay: ReservedPort::new(),
            sink: ReservedPort::new(),
            background: Vec::new(),
        };
        let config = s.path("examples/relay.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        let moved = s
            .ports(&text)
            .replace("port = 2526", &format!("port = {}", s.sink.port()));
        assert!(
            !moved.contains("2525") && !moved.contains("2526"),
            "{moved}"
        );
        std::fs::write(config, moved).unwrap();
        s
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn ports(&self, text: &str) -> String {
        text.replace("127.0.0.1:2525", &self.relay.addr().to_string())
            .replace("127.0.0.1:2526", &self.sink.addr().to_string())
    }

    /// A command for `program`, in the scratch directory.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, args: &[String]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args.iter().map(|a| self.ports(a)))
            .current_dir(self.dir.path())
            .env("WASMRELAY_LOG", "info");
        cmd
    }

    fn run(&self, what: &str, mut cmd: Command) -> Output {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_success(what, &out);
        out
    }

    /// Starts `cmd` in the background; returns when its log shows `ready`.
    fn spawn(&mut self, what: &str, mut cmd: Command, ready: &str) {
        let log = self.path(&format!("background-{}.log", self.background.len()));
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut bg = Background { child, log };
        wait_for(what, WAIT, || {
            if let Some(status) = bg.child.try_wait().unwrap() {
                panic!("{what} exited with {status}:\n{}", read(&bg.log));
            }
            read(&bg.log).contains(ready)
        });
        self.background.push(bg);
    }

    /// Runs one README command; returns why it was not run, if it was not.
    fn command_line(&mut self, line: &str) -> Option<&'static str> {
        let (line, background) = match line.strip_suffix('&') {
            Some(head) => (head.trim_end(), true),
            None => (line, false),
        };
        let w = words(line);
        let args = |from: usize| w[from..].to_vec();
        match w.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["cargo", "test", "--workspace"] => Some("the command that runs this test"),
            ["cargo", "install", ..] => {
                Some("a release build of the relay (about 10 minutes); its size is in the README")
            }
            ["rustup", "target", "add", "wasm32-wasip2"] => {
                let out = self.run(
                    "rustup",
                    self.command(
                        "rustup",
                        &["target".into(), "list".into(), "--installed".into()],
                    ),
                );
                assert!(String::from_utf8_lossy(&out.stdout).contains("wasm32-wasip2"));
                None
            }
            ["bench/run", ..] => Some("the benchmark: root and minutes"),
            ["sudo", ..] | ["systemctl", ..] | ["journalctl", ..] => {
                Some("root and a running systemd; tests/operations/service.rs checks the unit")
            }
            ["cargo", "build", ..] => {
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                self.run(line, self.command(cargo, &args(1)));
                None
            }
            ["cargo", "run", "--release", "--", ..] | ["wasmrelay", ..] => {
                let from = if w[0] == "wasmrelay" { 1 } else { 4 };
                let cmd = self.command(binary(), &args(from));
                match (w[from].as_str(), background) {
                    ("serve", _) => {
                        self.spawn(line, cmd, "listening address=");
                        if !background {
                            // In the foreground it runs until ^C: that it listens is the check.
                            self.background.pop();
                        }
                    }
                    ("sink", true) => self.spawn(line, cmd, "sink listening"),
                    (_, false) => {
                        let out = self.run(line, cmd);
                        if w[from] == "plugin" {
                            let text = String::from_utf8_lossy(&out.stdout);
                            assert!(text.contains("reject"), "{line}:\n{text}");
                        }
                    }
                    (_, true) => panic!("unexpected background command: {line}"),
                }
                None
            }
            ["swaks", ..] => {
                self.run(line, self.command("swaks", &args(1)));
                None
            }
            ["ls", dir] => {
                wait_for(&format!("a message in {dir}"), WAIT, || {
                    let names = files(&self.path(dir));
                    names.iter().any(|n| n.ends_with(".eml"))
                        && names.iter().any(|n| n.ends_with(".json"))
                });
                None
            }
            ["cat", file] => {
                wait_for(&format!("{file} to show the delivery"), WAIT, || {
                    let text = read(&self.path(file));
                    ["received", "queued", "delivered"]
                        .iter()
                        .all(|e| text.contains(&format!("\"event\":\"{e}\"")))
                });
                None
            }
            _ => panic!(
                "README command not covered by tests/operations/readme.rs: {line}\n\
                 (run it there, or list it with the reason it cannot run in a test)"
            ),
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Copies `from` into `to`, without build output and what earlier runs left behind.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if ["target", "spool", "sink"].iter().any(|n| name == *n)
            || name.to_string_lossy().starts_with("events.jsonl")
        {
            continue;
        }
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

#[test]
fn the_readme_parser_reads_commands() {
    let blocks = sh_blocks(
        "text\n```sh\n# comment\ncargo run --release -- a \\\n    --b 'c d'   # note\nls x &\n```\n```toml\nx = 1\n```\n",
    );
    assert_eq!(blocks, [["cargo run --release -- a --b 'c d'", "ls x &"]]);
    assert_eq!(
        words("x --config 'a = \"b\"' \"\" y"),
        ["x", "--config", "a = \"b\"", "", "y"]
    );
}

#[test]
fn every_readme_command_works_when_pasted() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 3, "{blocks:?}");
    let mut skipped = Vec::new();
    for block in blocks {
        // Two relays against a Redis on its fixed port, from a release build: tests/fleet runs
        // the same setup (relays, a real redis-server, the list commands) on free ports.
        if block.iter().any(|l| l.starts_with("redis-server ")) {
            skipped.push(format!(
                "the fleet block ({} lines)  (tests/fleet runs the same setup on free ports)",
                block.len()
            ));
            continue;
        }
        // Each block starts afresh, as a reader trying one section would.
        let mut scratch = Scratch::new();
        for line in &block {
            if let Some(why) = scratch.command_line(line) {
                skipped.push(format!("{line}  ({why})"));
            }
        }
    }
    eprintln!("not run here:\n  {}", skipped.join("\n  "));
}
