//! `limits.max_connections` and `limits.max_connections_per_address`: how many TCP
//! connections may be open at once, in all and from one client (an IPv4 address or an
//! IPv6 /64, as for the offer rate). Checked at accept, before any work is done for the
//! connection: a refused one is closed at once, so a flood of idle connections cannot
//! take roverd's file descriptors, and one client cannot take every place.
//!
//! Pure: the time comes in as an argument.

use crate::ratelimit::client_key;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Refusals closer together than this are one flood, logged once.
pub const FLOOD_QUIET: Duration = Duration::from_secs(10);

pub struct ConnLimits {
    max_total: usize,
    max_per_address: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    last_refusal: Option<Instant>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.max_connections` are open.
    Total { max: usize },
    /// `limits.max_connections_per_address` are open from this client.
    PerAddress { max: usize },
}

/// A refused connection: why, and whether it starts a flood (the one to log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub why: Refusal,
    pub first: bool,
}

/// One open connection's place; given back when dropped.
pub struct ConnGuard {
    limits: Arc<ConnLimits>,
    key: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut state = crate::sync::lock(&self.limits.state);
        state.total = state.total.saturating_sub(1);
        if let Some(n) = state.per_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                state.per_address.remove(&self.key);
            }
        }
    }
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_address,
            state: Mutex::new(State::default()),
        })
    }

    /// A place for a connection from `client`, or why there is none.
    pub fn admit(self: &Arc<Self>, client: IpAddr, now: Instant) -> Result<ConnGuard, Refused> {
        let key = client_key(client);
        let mut state = crate::sync::lock(&self.state);
        let from_client = state.per_address.get(&key).copied().unwrap_or(0);
        let why = if state.total >= self.max_total {
            Some(Refusal::Total {
                max: self.max_total,
            })
        } else if from_client >= self.max_per_address {
            Some(Refusal::PerAddress {
                max: self.max_per_address,
            })
        } else {
            None
        };
        if let Some(why) = why {
            let first = state
                .last_refusal
                .is_none_or(|last| now.saturating_duration_since(last) >= FLOOD_QUIET);
            state.last_refusal = Some(now);
            return Err(Refused { why, first });
        }
        state.total += 1;
        *state.per_address.entry(key).or_insert(0) += 1;
        Ok(ConnGuard {
            limits: Arc::clone(self),
            key,
        })
    }

    /// Open connections: in all, and from `client`.
    #[cfg(test)]
    pub fn open(&self, client: IpAddr) -> (usize, usize) {
        let state = crate::sync::lock(&self.state);
        let from = state
            .per_address
            .get(&client_key(client))
            .copied()
            .unwrap_or(0);
        (state.total, from)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Total { max } => {
                write!(f, "{max} connections are open (limits.max_connections)")
            }
            Refusal::PerAddress { max } => write!(
                f,
                "{max} connections are open from this address (limits.max_connections_per_address)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_share_and_others_the_rest() {
        let limits = ConnLimits::new(4, 2);
        let now = Instant::now();
        let a1 = limits.admit(ip("10.0.0.1"), now).unwrap();
        let _a2 = limits.admit(ip("10.0.0.1"), now).unwrap();
        let refused = limits.admit(ip("10.0.0.1"), now).err().unwrap();
        assert_eq!(refused.why, Refusal::PerAddress { max: 2 });
        let _b1 = limits.admit(ip("10.0.0.2"), now).unwrap();
        let _b2 = limits.admit(ip("10.0.0.2"), now).unwrap();
        let refused = limits.admit(ip("10.0.0.3"), now).err().unwrap();
        assert_eq!(refused.why, Refusal::Total { max: 4 });
        // A closed connection gives its place back.
        drop(a1);
        assert_eq!(limits.open(ip("10.0.0.1")), (3, 1));
        assert!(limits.admit(ip("10.0.0.1"), now).is_ok());
    }

    #[test]
    fn an_ipv6_64_is_one_client() {
        let limits = ConnLimits::new(16, 1);
        let now = Instant::now();
        let _a = limits.admit(ip("2001:db8::1"), now).unwrap();
        assert!(limits.admit(ip("2001:db8::2"), now).is_err());
        assert!(limits.admit(ip("2001:db8:0:1::1"), now).is_ok());
    }

    #[test]
    fn a_flood_is_logged_once() {
        let limits = ConnLimits::new(16, 1);
        let t0 = Instant::now();
        let _a = limits.admit(ip("10.0.0.1"), t0).unwrap();
        let firsts: Vec<bool> = (0..100)
            .map(|i| {
                let now = t0 + Duration::from_millis(i * 50);
                limits.admit(ip("10.0.0.1"), now).err().unwrap().first
            })
            .collect();
        assert!(firsts[0]);
        assert!(firsts[1..].iter().all(|f| !f), "one line per flood");
        // A new flood after a quiet spell is logged again.
        let later = t0 + Duration::from_secs(5) + FLOOD_QUIET;
        assert!(limits.admit(ip("10.0.0.1"), later).err().unwrap().first);
    }
}
