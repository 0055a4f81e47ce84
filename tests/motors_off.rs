//! The motors after roverd is gone: GPIO levels outlive the process, so a roverd killed
//! mid-drive leaves the motors turning until `roverd motors-off` (the unit's ExecStopPost=)
//! stops them. `motors.sim_file` stands in for the pins: it keeps what the sim was last
//! told, as pins keep their levels. Also: a latched e-stop survives a restart.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_roverd");
const DRIVE: &str = r#"{"type":"drive","left":0.5,"right":0.5}"#;

fn moving(s: &serde_json::Value) -> bool {
    s["left"].as_f64() != Some(0.0) || s["right"].as_f64() != Some(0.0)
}

/// A fresh directory with a config for the sim motors writing `motors.json` there.
fn setup(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("roverd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sim_file = dir.join("motors.json");
    let config = dir.join("roverd.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[camera]\ndevice = \"test\"\n[audio]\n\
             device = \"test\"\n[control]\ndeadman_ms = 5000\n[motors]\ndriver = \"sim\"\n\
             ramp_per_s = 1000\nsim_file = \"{}\"\n",
            sim_file.display()
        ),
    )
    .expect("config");
    (dir, config, sim_file)
}

/// What the sim file says: (left, right).
fn sim_file(file: &Path) -> (f64, f64) {
    let text = std::fs::read_to_string(file).expect("read the sim file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("the sim file is JSON");
    (
        v["left"].as_f64().expect("left"),
        v["right"].as_f64().expect("right"),
    )
}

fn roverd(config: &Path, state: &Path) -> Process {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .env("STATE_DIRECTORY", state)
        .env("RUST_LOG", "info");
    Process::spawn(cmd)
}

/// The unit's `ExecStopPost=` command line, split into words, with `/usr/bin/roverd` and
/// the installed config replaced by the built binary and `config`.
fn exec_stop_post(config: &Path) -> Vec<String> {
    let unit = std::fs::read_to_string(format!(
        "{}/systemd/roverd.service",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("read the unit");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStopPost="))
        .expect("the unit has an ExecStopPost= line");
    line.split_whitespace()
        .map(|word| match word {
            "/usr/bin/roverd" => BIN.to_owned(),
            "/etc/roverd/roverd.toml" => config.display().to_string(),
            other => other.to_owned(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_drive_leaves_the_motors_on_and_the_units_exec_stop_post_stops_them() {
    let (dir, config, file) = setup("sigkill");
    let mut roverd = roverd(&config, &dir);
    assert_eq!(
        sim_file(&file),
        (0.0, 0.0),
        "the sim file is written at start"
    );
    let mut peer = ClientPeer::connect_addr(roverd.addr).await;
    peer.send(DRIVE).await;
    peer.wait_state(moving).await;
    // Keep driving, as a held joystick does, while roverd is killed.
    let dc = peer.dc.clone();
    let driving = tokio::spawn(async move {
        loop {
            let _ = dc.send_text(DRIVE).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let deadline = Instant::now() + PATIENCE;
    while sim_file(&file) != (0.5, 0.5) {
        assert!(Instant::now() < deadline, "the sim file never said 0.5");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    roverd.child.kill().expect("SIGKILL");
    let status = roverd.child.wait().expect("wait");
    assert!(!status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sim_file(&file),
        (0.5, 0.5),
        "a killed roverd stops nothing: the pins keep their levels"
    );

    let argv = exec_stop_post(&config);
    let started = Instant::now();
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .expect("run ExecStopPost");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sim_file(&file), (0.0, 0.0), "{argv:?} stopped the motors");
    eprintln!("{argv:?} took {took:?}");
    assert!(took < Duration::from_secs(2), "motors-off took {took:?}");
    driving.abort();
    peer.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn motors_off_stops_what_the_config_names_and_fails_on_a_config_it_cannot_read() {
    let (dir, config, file) = setup("motors-off");
    std::fs::write(&file, r#"{"left": 1.0, "right": -1.0}"#).expect("write");
    let out = Command::new(BIN)
        .args(["motors-off", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sim_file(&file), (0.0, 0.0));

    // The sim without a file: nothing to stop, and it says so.
    let plain = dir.join("plain.toml");
    std::fs::write(&plain, "[motors]\ndriver = \"sim\"\n").expect("write");
    let out = Command::new(BIN)
        .args(["motors-off", "--config"])
        .arg(&plain)
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to stop"));

    for bad in [dir.join("missing.toml"), {
        let broken = dir.join("broken.toml");
        std::fs::write(&broken, "[motors]\nsim_file = \"relative.json\"\n").expect("write");
        broken
    }] {
        let out = Command::new(BIN)
            .args(["motors-off", "--config"])
            .arg(&bad)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{bad:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&*bad.to_string_lossy()), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latched_estop_survives_a_restart_until_reset() {
    let (dir, config, file) = setup("latch");
    let state = dir.join("state");
    let roverd1 = roverd(&config, &state);
    let mut peer = ClientPeer::connect_addr(roverd1.addr).await;
    peer.send(r#"{"type":"estop"}"#).await;
    peer.wait_state(|s| s["estop"] == true).await;
    peer.close().await;
    drop(roverd1); // SIGKILL: the latch is on disk already

    let roverd2 = roverd(&config, &state);
    assert_eq!(
        roverd2.status().await["motors"]["estop"],
        true,
        "latched after a restart"
    );
    let mut peer = ClientPeer::connect_addr(roverd2.addr).await;
    peer.send(r#"{"type":"drive","left":1,"right":1,"seq":1}"#)
        .await;
    let refusal = peer.next_error().await;
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.contains("latched")),
        "{refusal}"
    );
    assert_eq!(sim_file(&file), (0.0, 0.0));
    peer.send(r#"{"type":"reset"}"#).await;
    peer.wait_state(|s| s["estop"] == false).await;
    peer.close().await;
    drop(roverd2);

    let roverd3 = roverd(&config, &state);
    assert_eq!(
        roverd3.status().await["motors"]["estop"],
        false,
        "reset is kept too"
    );
    drop(roverd3);
    let _ = std::fs::remove_dir_all(dir);
}
