//! Rate limits as token buckets: offers per client address, data-channel messages per
//! peer (one [`SharedBucket`] for all of a peer's channels). Pure: the time comes in as an
//! argument, so the tests need no clock.
//!
//! A bucket holds up to `capacity` tokens and refills at `per_s`; each event takes one.
//! A full bucket allows a burst (a page opening several tabs), the refill the sustained rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What [`Bucket::take`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allowed,
    /// Refused; `first` is true for the first refusal after an allowed event, so that a
    /// flood gives one log line, not one per event. `retry_after` is when a token is back.
    Refused {
        first: bool,
        retry_after: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: f64,
    per_s: f64,
    tokens: f64,
    last: Instant,
    refusing: bool,
}

impl Bucket {
    /// A full bucket.
    pub fn new(capacity: u32, per_s: f64, now: Instant) -> Self {
        let capacity = f64::from(capacity.max(1));
        Self {
            capacity,
            per_s,
            tokens: capacity,
            last: now,
            refusing: false,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_s).min(self.capacity);
        self.last = now;
    }

    pub fn take(&mut self, now: Instant) -> Decision {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refusing = false;
            return Decision::Allowed;
        }
        let first = !self.refusing;
        self.refusing = true;
        let missing = 1.0 - self.tokens;
        Decision::Refused {
            first,
            retry_after: Duration::from_secs_f64(missing / self.per_s),
        }
    }

    /// Whether the bucket would be full at `now`: such a bucket can be forgotten.
    fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.per_s >= self.capacity
    }
}

/// One bucket shared by several users: all the data channels of one peer take from it, so
/// opening more channels does not buy a peer more messages.
#[derive(Debug, Clone)]
pub struct SharedBucket(Arc<Mutex<Bucket>>);

impl SharedBucket {
    pub fn new(bucket: Bucket) -> Self {
        Self(Arc::new(Mutex::new(bucket)))
    }

    pub fn take(&self, now: Instant) -> Decision {
        crate::sync::lock(&self.0).take(now)
    }
}

/// One bucket per client: an IPv4 address, or an IPv6 /64 (one home network gets one /64,
/// and a single host can pick any address inside it).
pub struct PerClient {
    buckets: HashMap<IpAddr, Bucket>,
    per_minute: u32,
}

/// Above this many tracked clients, full buckets are forgotten.
const PRUNE_ABOVE: usize = 1024;

impl PerClient {
    pub fn new(per_minute: u32) -> Self {
        Self {
            buckets: HashMap::new(),
            per_minute,
        }
    }

    pub fn take(&mut self, client: IpAddr, now: Instant) -> Decision {
        if self.buckets.len() > PRUNE_ABOVE {
            self.buckets.retain(|_, b| !b.is_full(now));
        }
        let per_minute = self.per_minute;
        self.buckets
            .entry(client_key(client))
            .or_insert_with(|| Bucket::new(per_minute, f64::from(per_minute) / 60.0, now))
            .take(now)
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// The address a limit counts a client by: IPv4 as is, IPv6 by its /64.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::from(segments)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(d: Decision) -> bool {
        matches!(d, Decision::Refused { .. })
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3, 1.0, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0), Decision::Allowed);
        }
        match b.take(t0) {
            Decision::Refused { first, retry_after } => {
                assert!(first);
                assert_eq!(retry_after, Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
        // Only the first refusal of a run is `first`.
        assert_eq!(
            b.take(t0 + Duration::from_millis(500)),
            Decision::Refused {
                first: false,
                retry_after: Duration::from_millis(500)
            }
        );
        assert_eq!(b.take(t0 + Duration::from_millis(1000)), Decision::Allowed);
        assert!(refused(b.take(t0 + Duration::from_millis(1000))));
        // A long pause refills to the capacity, no more.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert_eq!(b.take(later), Decision::Allowed);
        }
        assert!(refused(b.take(later)));
    }

    #[test]
    fn clones_of_a_shared_bucket_take_from_the_same_tokens() {
        let t0 = Instant::now();
        let one = SharedBucket::new(Bucket::new(2, 1.0, t0));
        let other = one.clone();
        assert_eq!(one.take(t0), Decision::Allowed);
        assert_eq!(other.take(t0), Decision::Allowed);
        assert!(refused(one.take(t0)));
        assert!(refused(other.take(t0)));
    }

    #[test]
    fn time_going_backwards_changes_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = Bucket::new(1, 1.0, t0);
        assert_eq!(b.take(t0), Decision::Allowed);
        assert!(refused(b.take(t0 - Duration::from_secs(5))));
    }

    #[test]
    fn clients_have_their_own_buckets() {
        let t0 = Instant::now();
        let mut offers = PerClient::new(2);
        let a: IpAddr = "192.168.1.10".parse().unwrap();
        let b: IpAddr = "192.168.1.11".parse().unwrap();
        assert_eq!(offers.take(a, t0), Decision::Allowed);
        assert_eq!(offers.take(a, t0), Decision::Allowed);
        assert!(refused(offers.take(a, t0)));
        assert_eq!(offers.take(b, t0), Decision::Allowed);
        // 2 per minute: one back after 30 s.
        assert_eq!(
            offers.take(a, t0 + Duration::from_secs(30)),
            Decision::Allowed
        );
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_mapped_v4_is_v4() {
        let t0 = Instant::now();
        let mut offers = PerClient::new(1);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other_in_same_64: IpAddr = "2001:db8:1:2:abcd::9".parse().unwrap();
        assert_eq!(offers.take(one, t0), Decision::Allowed);
        assert!(refused(offers.take(other_in_same_64, t0)));
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(offers.take(v4, t0), Decision::Allowed);
        assert!(refused(offers.take(mapped, t0)));
    }

    #[test]
    fn full_buckets_are_forgotten_when_many_clients_came() {
        let t0 = Instant::now();
        let mut offers = PerClient::new(60);
        for i in 0..=PRUNE_ABOVE as u32 {
            offers.take(IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()), t0);
        }
        assert_eq!(offers.tracked(), PRUNE_ABOVE + 1);
        // A second later every bucket has its token back.
        offers.take("10.9.9.9".parse().unwrap(), t0 + Duration::from_secs(1));
        assert_eq!(offers.tracked(), 1);
    }
}
