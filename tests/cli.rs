//! The `roverd` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_roverd");

fn repo_file(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(BIN)
        .arg("--version")
        .output()
        .expect("run roverd");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("roverd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_accepts_the_example_and_names_the_bad_key_in_a_broken_file() {
    let out = Command::new(BIN)
        .args(["check-config", &repo_file("config/roverd.toml")])
        .output()
        .expect("run roverd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = std::env::temp_dir().join(format!("roverd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[camera]\nwidth = 0\nfps = 30\n[http]\nmax_peers = 0\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["check-config", bad.to_str().expect("utf-8 path")])
        .output()
        .expect("run roverd");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("camera.width"), "{stderr}");
    assert!(
        stderr.contains("http.max_peers"),
        "both problems are reported: {stderr}"
    );

    std::fs::write(&bad, "[camera]\nzoom = 2\n").expect("write");
    let out = Command::new(BIN)
        .args(["check-config", bad.to_str().expect("utf-8 path")])
        .output()
        .expect("run roverd");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("zoom"));

    let out = Command::new(BIN)
        .args(["check-config", "/nonexistent/roverd.toml"])
        .output()
        .expect("run roverd");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/roverd.toml"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_stops_a_serving_roverd_with_exit_0_within_2_seconds() {
    let mut child = Command::new(BIN)
        .args(["--simulate", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start roverd");
    // If an assertion below fails, roverd must not be left running.
    let pid = child.id();
    struct KillOnPanic(u32);
    impl Drop for KillOnPanic {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.0.to_string()])
                    .status();
            }
        }
    }
    let _guard = KillOnPanic(pid);
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let listening = loop {
        match lines.next() {
            Some(Ok(line)) => {
                let found = line.contains("listening on http://127.0.0.1:");
                seen.push(line);
                if found {
                    break true;
                }
            }
            _ => break false,
        }
    };
    assert!(
        listening,
        "roverd never said it was listening:\n{}",
        seen.join("\n")
    );
    // Keep draining stderr so roverd never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let pid = child.id().to_string();
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let (exited_tx, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited_tx.send(child.wait());
    });
    let status = exited
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_else(|_| panic!("roverd still running {:?} after SIGTERM", sent.elapsed()))
        .expect("wait for roverd");
    assert!(status.success(), "roverd exited with {status}");
    let rest = drain.join().expect("stderr reader");
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
}

#[test]
#[cfg(all(feature = "camera-v4l", feature = "mic-alsa", feature = "gpio-rppal"))]
fn devices_lists_cameras_microphones_and_gpio_or_says_plainly_there_are_none() {
    let out = Command::new(BIN)
        .arg("devices")
        .output()
        .expect("run roverd");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let any_node = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("video"))
        });
    let sections: Vec<&str> = stdout.split("\n# == ").collect();
    assert_eq!(sections.len(), 3, "cameras, microphones, GPIO: {stdout}");
    let cameras = sections[0]
        .strip_prefix("# == Cameras ==\n")
        .expect("the cameras first");
    if any_node {
        assert!(cameras.starts_with("# /dev/video"), "{stdout}");
    } else {
        assert_eq!(cameras, "no cameras found (looked at /dev/video*)\n");
    }
    assert!(sections[1].starts_with("Microphones ==\n"), "{stdout}");
    let mics = &sections[1]["Microphones ==\n".len()..];
    assert!(
        mics.starts_with("No ALSA capture devices found")
            || mics.starts_with("Microphones (ALSA capture devices)"),
        "{stdout}"
    );
    assert!(
        sections[2].starts_with("GPIO (motors) ==\nGPIO "),
        "{stdout}"
    );
    // Off a Pi the GPIO cannot be reachable; on one it depends on the user's groups.
    let on_a_pi = std::fs::read_to_string("/proc/device-tree/model")
        .is_ok_and(|m| m.starts_with("Raspberry Pi"));
    if !on_a_pi {
        assert!(sections[2].contains("GPIO not reachable"), "{stdout}");
        assert!(sections[2].contains("motors.driver = \"sim\""), "{stdout}");
    }
}

#[test]
#[cfg(not(any(feature = "camera-v4l", feature = "mic-alsa", feature = "gpio-rppal")))]
fn devices_says_which_backends_this_build_left_out() {
    let out = Command::new(BIN)
        .arg("devices")
        .output()
        .expect("run roverd");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sections: Vec<&str> = stdout.split("\n# == ").collect();
    assert_eq!(sections.len(), 3, "cameras, microphones, GPIO: {stdout}");
    for (section, feature) in sections
        .iter()
        .zip(["camera-v4l", "mic-alsa", "gpio-rppal"])
    {
        assert!(
            section.contains("built without") && section.contains(feature),
            "{stdout}"
        );
    }
}
