//! RTCBot, the Python library, connects unmodified: its own `RTCConnection` (on aiortc)
//! posts to `/connect`, takes the answer, receives 640x480 video and gets a `pong` on its
//! default data channel. Runs the real client (tests/rtcbot/client.py) from a venv kept in
//! target/venv-rtcbot, made on first use with `python3 -m venv` (Debian: python3-venv) and
//! `pip install rtcbot==0.2.5` (from PyPI), and reused after.

mod common;

use common::{test_config, Server};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The version of RTCBot this test is known to pass with.
const RTCBOT: &str = "rtcbot==0.2.5";

/// target/venv-rtcbot, beside target/debug.
fn venv_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_roverd"));
    bin.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/roverd")
        .join("venv-rtcbot")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The venv's python, with RTCBot installed in it.
fn python_with_rtcbot() -> PathBuf {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    let has_rtcbot = |python: &Path| {
        Command::new(python)
            .args(["-c", "import rtcbot, aiortc, aiohttp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_rtcbot(&python) {
        return python;
    }
    // Half made (an interrupted install): start again.
    let _ = std::fs::remove_dir_all(&venv);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv (on Debian: apt-get install python3-venv)",
    );
    run(
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            RTCBOT,
        ]),
        "pip install rtcbot",
    );
    assert!(
        has_rtcbot(&python),
        "rtcbot is not importable after pip install"
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtcbots_own_client_connects_receives_video_and_gets_a_pong() {
    let python = tokio::task::spawn_blocking(python_with_rtcbot)
        .await
        .expect("venv");
    let server = Server::start(test_config()).await;
    let url = format!("http://{}/connect", server.addr);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rtcbot/client.py");
    let started = Instant::now();
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the RTCBot client");
    // Waited for off the async threads (roverd runs on them), for at most 60 s.
    let out = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("RTCBot client output")
    })
    .await
    .expect("waiting for the RTCBot client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the RTCBot client failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let got: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no output; stderr:\n{stderr}")),
    )
    .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    eprintln!("RTCBot: {got} ({:?})", started.elapsed());
    assert_eq!(got["answer_keys"], serde_json::json!(["sdp", "type"]));
    assert!(
        got["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("/api/peers/p") && l.contains("?secret=")),
        "{got}"
    );
    assert_eq!(
        got["frame_shape"],
        serde_json::json!([480, 640, 3]),
        "{got}"
    );
    assert_eq!(got["pong"]["t"], 42.5, "{got}");
    server.stop().await;
}
