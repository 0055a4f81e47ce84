//! Telling systemd how roverd is doing (`sd_notify`), so that `Type=notify` and
//! `WatchdogSec=` in `systemd/roverd.service` mean something:
//!
//! - `READY=1` once the HTTP server listens and both encoders have produced frames
//!   (the moment `/healthz` turns 200), so `systemctl start roverd` returns when the robot
//!   can really be watched;
//! - `WATCHDOG=1` every `WATCHDOG_USEC / 2`, but only while capture and encoding progress
//!   (the frame counters grew since the last ping) and roverd is healthy (motor control
//!   alive). A camera or encoder that hangs, or a motor task that died, stops the pings,
//!   and systemd restarts roverd;
//! - `STOPPING=1` when shutdown begins.
//!
//! Without `NOTIFY_SOCKET` (roverd not started by systemd) every call here is a silent
//! no-op and [`supervise`] returns at once. The decision "did the pipeline move?" is the
//! pure [`Progress`]; the rest is the task around it, which sees the pipeline only through
//! [`Pipeline`].

use sd_notify::NotifyState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often the readiness check looks at the encoders before `READY=1`.
const READY_POLL: Duration = Duration::from_millis(20);

/// What [`supervise`] watches: the encoders, as the daemon sees them.
pub trait Pipeline: Send + Sync {
    /// Ready to be watched: what `/healthz` answers 200 to. Checked before every watchdog
    /// ping too, so that a part of roverd that died (motor control) stops the pings.
    fn healthy(&self) -> bool;
    /// The frames encoded so far: (video, audio).
    fn frames_encoded(&self) -> (u64, u64);
    /// Whether there is an audio track, whose encoder must progress too.
    fn has_audio(&self) -> bool;
}

/// Whether the media pipeline moved between two watchdog ticks.
#[derive(Debug, Default)]
pub struct Progress {
    last: Option<(u64, u64)>,
}

impl Progress {
    /// Starts from the counters seen when roverd became ready.
    pub fn new(frames: (u64, u64)) -> Self {
        Self { last: Some(frames) }
    }

    /// Records `frames` (video, audio encoded so far) and says whether the pipeline
    /// progressed since the last call: video frames must have grown, and audio frames
    /// too when there is an audio track. Either one stalling is a stall.
    pub fn advanced(&mut self, frames: (u64, u64), has_audio: bool) -> bool {
        let moved = match self.last {
            None => true,
            Some((video, audio)) => frames.0 > video && (!has_audio || frames.1 > audio),
        };
        self.last = Some(frames);
        moved
    }
}

/// The interval between two watchdog pings: half of what systemd allows
/// (`WATCHDOG_USEC`), as sd_watchdog_enabled(3) recommends. `None` when the watchdog is
/// off or meant for another process (`WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|timeout| !timeout.is_zero())
        .map(|timeout| timeout / 2)
}

/// True when a service manager listens for notifications (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Sends `states` to the service manager, if any. A failure is logged, never fatal:
/// without notifications systemd restarts roverd, which is the right outcome anyway.
fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("could not notify systemd ({states:?}): {e}");
    }
}

/// Says shutdown has begun (`STOPPING=1`).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Sends `READY=1` once `pipeline`, served on `addr`, is healthy, then pings the watchdog
/// while it progresses, until the task is dropped (`serve` aborts it at shutdown).
pub async fn supervise<P: Pipeline + ?Sized>(pipeline: Arc<P>, addr: SocketAddr) {
    if !enabled() {
        return;
    }
    while !pipeline.healthy() {
        tokio::time::sleep(READY_POLL).await;
    }
    let status = format!("serving on http://{addr}/");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    log::debug!("told systemd roverd is ready");

    let Some(interval) = watchdog_interval() else {
        return;
    };
    log::debug!("pinging systemd's watchdog every {interval:?} while the encoders run");
    let mut progress = Progress::new(pipeline.frames_encoded());
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    let mut stalled = false;
    loop {
        ticks.tick().await;
        let frames = pipeline.frames_encoded();
        let advanced = progress.advanced(frames, pipeline.has_audio());
        if !pipeline.healthy() {
            if !stalled {
                stalled = true;
                log::error!(
                    "roverd is not healthy (see /healthz): not pinging systemd's watchdog, \
                     which will restart roverd"
                );
            }
        } else if advanced {
            if stalled {
                log::info!("the encoders produce frames again");
                stalled = false;
            }
            send(&[NotifyState::Watchdog]);
        } else if !stalled {
            stalled = true;
            log::error!(
                "no frame encoded in the last {interval:?} (video {}, audio {} so far): \
                 not pinging systemd's watchdog, which will restart roverd",
                frames.0,
                frames.1
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_needs_new_video_frames() {
        let mut p = Progress::new((10, 0));
        assert!(p.advanced((11, 0), false));
        assert!(!p.advanced((11, 0), false), "no new frame is a stall");
        assert!(p.advanced((40, 0), false), "frames again: progress again");
    }

    #[test]
    fn progress_needs_audio_too_when_there_is_audio() {
        let mut p = Progress::new((10, 20));
        assert!(p.advanced((12, 25), true));
        assert!(
            !p.advanced((14, 25), true),
            "a stalled microphone is a stall"
        );
        assert!(!p.advanced((14, 30), true), "a stalled camera is a stall");
        assert!(p.advanced((15, 31), true));
    }

    #[test]
    fn progress_ignores_audio_without_an_audio_track() {
        let mut p = Progress::new((1, 0));
        assert!(p.advanced((2, 0), false));
    }

    #[test]
    fn progress_without_a_baseline_counts_the_first_look_as_progress() {
        let mut p = Progress::default();
        assert!(p.advanced((0, 0), true));
        assert!(!p.advanced((0, 0), true));
    }
}
