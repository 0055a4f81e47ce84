//! roverd's logs under systemd: with its stderr being the journal stream (`JOURNAL_STREAM`)
//! every record goes to the journal's native socket with its priority and its module.
//!
//! The journal here is a test double: the socket path is fixed
//! (`/run/systemd/journal/socket`), so roverd runs in its own mount namespace
//! (`unshare -rm`, no root needed) where `/run` is a directory of the test's, and the test
//! reads the datagrams that journald would have read.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_roverd");
const PATIENCE: Duration = Duration::from_secs(15);

/// A scratch directory that is `/run` for roverd, and the file that is its stderr.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "roverd-journal-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run/systemd/journal")).expect("temp dir");
        Scratch { dir }
    }

    fn journal_socket(&self) -> UnixDatagram {
        UnixDatagram::bind(self.dir.join("run/systemd/journal/socket")).expect("bind")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.join("stderr")
    }

    /// Starts roverd as systemd would: stderr is the journal stream and
    /// `JOURNAL_STREAM` names it (device:inode).
    fn start_roverd(&self, extra_env: &[(&str, &str)]) -> Roverd {
        let stderr = std::fs::File::create(self.stderr_path()).expect("stderr file");
        let meta = stderr.metadata().expect("stat");
        let mut command = Command::new("unshare");
        command
            .args(["--map-root-user", "--mount", "--", "sh", "-c"])
            .arg(r#"mount --bind "$0" /run && exec "$@""#)
            .arg(self.dir.join("run"))
            .args([BIN, "--simulate", "--listen", "127.0.0.1:0"])
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in extra_env {
            command.env(k, v);
        }
        Roverd(command.spawn().expect(
            "run unshare (util-linux): these tests need unprivileged user namespaces \
             (sysctl kernel.unprivileged_userns_clone=1) or root",
        ))
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Roverd(Child);

impl Drop for Roverd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Decodes one datagram of journald's native protocol: `KEY=value\n`, or for values with
/// newlines `KEY\n` + 64-bit little-endian length + value + `\n`.
fn parse_entry(mut data: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while !data.is_empty() {
        let end = data.iter().position(|&b| b == b'\n').expect("field end");
        let line = &data[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            data = &data[end + 1..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().expect("length")) as usize;
            fields.insert(key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned());
            data = &rest[8 + len + 1..];
        }
    }
    fields
}

/// Reads journal entries until one satisfies `done`; returns them all.
fn read_until(
    socket: &UnixDatagram,
    done: impl Fn(&HashMap<String, String>) -> bool,
    stderr: impl Fn() -> String,
) -> Vec<HashMap<String, String>> {
    let deadline = Instant::now() + PATIENCE;
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the awaited record never reached the journal; got {entries:?}; stderr:\n{}",
            stderr()
        );
        socket.set_read_timeout(Some(left)).expect("timeout");
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        if n == 0 {
            continue; // the logger's "is anyone there?" probe
        }
        let entry = parse_entry(&buf[..n]);
        let found = done(&entry);
        entries.push(entry);
        if found {
            return entries;
        }
    }
}

fn message_has(entry: &HashMap<String, String>, text: &str) -> bool {
    entry.get("MESSAGE").is_some_and(|m| m.contains(text))
}

#[test]
fn under_systemd_records_reach_the_journal_with_priority_and_module() {
    let scratch = Scratch::new();
    let socket = scratch.journal_socket();
    // The stall hook is only here for its warning: a second priority to look at.
    let _roverd = scratch.start_roverd(&[("ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES", "1000000")]);
    let entries = read_until(
        &socket,
        |e| message_has(e, "listening on http://127.0.0.1:"),
        || scratch.stderr(),
    );

    let listening = entries.last().expect("an entry");
    assert_eq!(
        listening["PRIORITY"], "5",
        "info is notice (5): {listening:?}"
    );
    assert_eq!(listening["TARGET"], "roverd::server");
    assert_eq!(listening["CODE_MODULE"], "roverd::server");
    assert_eq!(listening["SYSLOG_IDENTIFIER"], "roverd");
    assert_eq!(listening["ROVERD_VERSION"], env!("CARGO_PKG_VERSION"));
    assert!(
        listening["CODE_FILE"].ends_with("server.rs"),
        "{listening:?}"
    );

    let warning = entries
        .iter()
        .find(|e| message_has(e, "ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES"))
        .unwrap_or_else(|| panic!("the hook's warning is not in the journal: {entries:?}"));
    assert_eq!(warning["PRIORITY"], "4", "warn is warning (4)");
    assert_eq!(warning["TARGET"], "roverd::media");

    // webrtc-rs's info chatter stays out, as on stderr; and nothing went to stderr.
    assert!(
        entries
            .iter()
            .all(|e| e.get("TARGET").is_some_and(|t| t.starts_with("roverd"))),
        "{entries:?}"
    );
    assert_eq!(scratch.stderr(), "", "records went to stderr too");
}

#[test]
fn without_a_journal_socket_lines_go_to_stderr_with_priority_prefixes() {
    let scratch = Scratch::new(); // no socket bound: journald is absent
    let mut roverd = scratch.start_roverd(&[]);
    let deadline = Instant::now() + PATIENCE;
    let stderr = loop {
        let text = scratch.stderr();
        if text.contains("listening on http://127.0.0.1:") {
            break text;
        }
        if let Some(status) = roverd.0.try_wait().expect("try_wait") {
            panic!("roverd exited with {status}:\n{text}");
        }
        assert!(Instant::now() < deadline, "roverd never listened:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        stderr.contains("<4>roverd: the systemd journal is not reachable"),
        "{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("listening on"))
        .expect("the line");
    assert!(line.starts_with("<5>INFO  roverd::server: "), "{line}");
}

#[test]
fn a_journal_stream_that_is_not_our_stderr_is_ignored() {
    // JOURNAL_STREAM inherited by a shell started from a service, say: stderr is a pipe
    // here, not that stream, so lines are plain stderr lines, with no priority prefix.
    let mut child = Command::new(BIN)
        .args(["--simulate", "--listen", "127.0.0.1:0"])
        .env("JOURNAL_STREAM", "1:1")
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start roverd");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = Vec::new();
    for line in stderr.lines().map_while(Result::ok) {
        let done = line.contains("listening on http://127.0.0.1:");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let last = seen.last().cloned().unwrap_or_default();
    assert!(last.starts_with("INFO  roverd::server: "), "{seen:?}");
    assert!(seen.iter().all(|l| !l.starts_with('<')), "{seen:?}");
}
