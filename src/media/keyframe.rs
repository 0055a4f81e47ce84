//! When the encoder may force a keyframe: at most one per [`MIN_GAP`], whoever asks and
//! however often.
//!
//! Every viewer may ask (a new peer, a PLI or FIR, a peer that lost frames), and a keyframe
//! costs many times a P-frame: a burst of requests answered one by one would flood every
//! viewer's link with keyframes and make the picture worse for all. So requests only set
//! a flag; the encoder thread asks [`KeyframeThrottle::take`] before each picture, and a
//! keyframe is forced when one is wanted and the last forced one is at least [`MIN_GAP`]
//! old. A request after a quiet [`MIN_GAP`] (a new viewer, usually) is therefore served on
//! the next picture; one inside the gap waits for its end instead of being lost.
//!
//! The periodic keyframes of the GOP are the encoder's own and do not count against the
//! gap; one that goes out answers whatever was waiting.
//!
//! Invariant: pure. Time comes in as an argument.

use std::time::{Duration, Instant};

/// The shortest time between two forced keyframes.
pub const MIN_GAP: Duration = Duration::from_millis(500);

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    min_gap: Duration,
    wanted: bool,
    last_forced: Option<Instant>,
}

impl Default for KeyframeThrottle {
    fn default() -> Self {
        Self::new(MIN_GAP)
    }
}

impl KeyframeThrottle {
    pub fn new(min_gap: Duration) -> Self {
        Self {
            min_gap,
            wanted: false,
            last_forced: None,
        }
    }

    /// Someone wants a keyframe. Requests before the next one is forced coalesce.
    pub fn request(&mut self) {
        self.wanted = true;
    }

    /// Whether a keyframe is wanted and not yet answered.
    #[cfg(test)]
    pub fn pending(&self) -> bool {
        self.wanted
    }

    /// Called before encoding the picture of time `now`: true when this picture must be
    /// forced to a keyframe (and counts that it was).
    pub fn take(&mut self, now: Instant) -> bool {
        if !self.wanted {
            return false;
        }
        let quiet = self
            .last_forced
            .is_none_or(|t| now.saturating_duration_since(t) >= self.min_gap);
        if quiet {
            self.wanted = false;
            self.last_forced = Some(now);
        }
        quiet
    }

    /// The encoder made a keyframe it was not told to (the GOP's): whatever was waiting
    /// is answered, and the gap is left as it was.
    pub fn keyframe_sent(&mut self) {
        self.wanted = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_is_forced_unasked() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        assert!((0..100).all(|i| !k.take(t0 + ms(33 * i))));
    }

    #[test]
    fn the_first_request_after_a_quiet_gap_is_served_at_once() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        k.request();
        assert!(k.take(t0), "the very first request");
        k.request();
        assert!(!k.take(t0 + ms(499)));
        assert!(k.take(t0 + ms(500)), "served when the gap ends");
        // Quiet for longer than the gap: the next request (a new viewer) goes at once.
        k.request();
        assert!(k.take(t0 + ms(1700)));
    }

    #[test]
    fn a_flood_of_requests_gives_one_keyframe_per_gap_and_loses_none() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        let mut forced = Vec::new();
        // 30 fps for 3 s, a request before every picture for the first 1 s (30 PLIs).
        for frame in 0..90u64 {
            let now = t0 + ms(frame * 1000 / 30);
            if frame < 30 {
                k.request();
            }
            if k.take(now) {
                forced.push(now - t0);
            }
        }
        assert_eq!(forced, [ms(0), ms(500), ms(1000)], "{forced:?}");
        assert!(!k.pending(), "the last request was answered, not dropped");
        for w in forced.windows(2) {
            assert!(w[1] - w[0] >= MIN_GAP);
        }
    }

    #[test]
    fn a_periodic_keyframe_answers_what_was_waiting() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        k.request();
        assert!(k.take(t0));
        k.request();
        assert!(!k.take(t0 + ms(100)));
        k.keyframe_sent();
        assert!(!k.pending());
        assert!(!k.take(t0 + ms(600)), "already answered");
    }

    #[test]
    fn a_clock_that_steps_back_does_not_open_the_gate() {
        let t0 = Instant::now() + ms(10_000);
        let mut k = KeyframeThrottle::default();
        k.request();
        assert!(k.take(t0));
        k.request();
        assert!(!k.take(t0 - ms(5_000)));
    }
}
