//! Command latency: from a data-channel message in hand to the motor backend being
//! written, through exactly the path the data channel uses (the `Session`'s checks and
//! parse, then `Control`: the motor task, the safety rules, the backend).
//!
//! `cargo bench --bench control` prints p50/p99/max over 10,000 drive commands, each from
//! rest (a stop between them, as between key presses), with the default ramp (4/s) and
//! with the ramp off.

use roverd::testing::Control;
use roverd::testing::{Access, ChannelPolicy, Session, Step};
use roverd::testing::{MotorError, Motors};
use roverd::testing::{MotorLimits, Wheel};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Tells the bench the instant of every write.
struct Timed(mpsc::UnboundedSender<Instant>);

impl Motors for Timed {
    fn name(&self) -> &'static str {
        "timed"
    }

    fn set(&mut self, _left: f64, _right: f64) -> Result<(), MotorError> {
        let _ = self.0.send(Instant::now());
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn next_write(writes: &mut mpsc::UnboundedReceiver<Instant>) -> Instant {
    tokio::time::timeout(Duration::from_secs(1), writes.recv())
        .await
        .expect("the backend was written within 1 s")
        .expect("motor task alive")
}

/// One text message through the session and, if it is a motor command, the motor task,
/// as the data channel does it. True when it was carried out without a reply.
async fn handle(session: &mut Session, control: &Control, text: &str) -> bool {
    match session.on_message(Instant::now(), text.as_bytes(), true) {
        Step::Command(order) => match control.command("bench", order.command.clone()).await {
            Ok(()) => true,
            Err(e) => session.refused(&order, &e).is_none(),
        },
        Step::Nothing => false,
        Step::Reply(_) => false,
    }
}

async fn run(ramp_per_s: f64, commands: usize) -> Vec<Duration> {
    let (tx, mut writes) = mpsc::unbounded_channel();
    let control = Control::start_with(
        Box::new(Timed(tx)),
        MotorLimits {
            deadman: Duration::from_millis(500),
            max_speed: 1.0,
            ramp_per_s,
            left: Wheel::default(),
            right: Wheel::default(),
        },
    );
    let policy = ChannelPolicy {
        access: Access::Full,
        deadman_ms: 500,
        message_bytes: roverd::testing::MAX_MESSAGE_BYTES,
        // No rate limit in the way: every command is measured.
        messages_per_s: u32::MAX,
    };
    let mut session = Session::new("bench".into(), policy, Instant::now());
    let mut latencies = Vec::with_capacity(commands);
    for i in 0..commands {
        let speed = if i % 2 == 0 { 0.5 } else { -0.5 };
        let drive = format!(r#"{{"type":"drive","left":{speed},"right":{speed},"seq":{i}}}"#);
        while writes.try_recv().is_ok() {}
        let sent = Instant::now();
        assert!(
            handle(&mut session, &control, &drive).await,
            "drive refused"
        );
        latencies.push(next_write(&mut writes).await - sent);
        assert!(handle(&mut session, &control, r#"{"type":"stop"}"#).await);
        next_write(&mut writes).await;
        // After a stop the driver lets go (a zero drive; nothing to write) before driving.
        assert!(
            handle(
                &mut session,
                &control,
                r#"{"type":"drive","left":0,"right":0}"#
            )
            .await
        );
    }
    control.halt().await;
    latencies
}

fn main() {
    let commands = 10_000;
    println!("roverd command latency: cargo bench --bench control");
    println!(
        "message in hand -> session -> motor task -> backend written, {commands} drives from rest"
    );
    // roverd itself runs a multi-threaded runtime, where the motor task may wake on the
    // other worker; the single-threaded figure isolates roverd's own work.
    for (runtime_name, multi) in [
        ("multi-thread (as roverd)", true),
        ("current-thread", false),
    ] {
        let runtime = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .expect("runtime");
        for (label, ramp) in [("default ramp 4/s", 4.0), ("ramp off (1000/s)", 1000.0)] {
            let mut l = runtime.block_on(run(ramp, commands));
            l.sort();
            println!(
                "{runtime_name:>24}, {label:>18}: p50 {:>6.1} µs, p99 {:>6.1} µs, max {:>7.1} µs",
                percentile(&l, 0.50).as_secs_f64() * 1e6,
                percentile(&l, 0.99).as_secs_f64() * 1e6,
                l[l.len() - 1].as_secs_f64() * 1e6,
            );
        }
    }
}
