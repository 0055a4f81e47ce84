//! One producer, many consumers, and no consumer can slow the producer down.
//!
//! The encoder threads publish each encoded frame once; every peer holds a [`Subscriber`].
//! A peer that stops reading (a stalled browser, a congested Wi-Fi link) falls behind by at
//! most `capacity` items, after which it loses the oldest ones and is told how many it lost,
//! so it can ask for a keyframe. The producer never waits and the other peers never notice.
//!
//! This is a thin layer over `tokio::sync::broadcast`, which already has exactly these
//! semantics; the layer names the outcomes in roverd's terms and keeps counts for status.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The publishing side. Cheap to clone; `publish` works from any thread, async or not.
#[derive(Debug, Clone)]
pub struct Fanout<T> {
    tx: broadcast::Sender<T>,
    published: Arc<AtomicU64>,
}

/// What a subscriber gets next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    Item(T),
    /// The subscriber fell behind and `n` items were dropped for it alone.
    Dropped(u64),
    /// The producer is gone: the pipeline has shut down.
    Closed,
}

/// One consumer's view of the stream.
#[derive(Debug)]
pub struct Subscriber<T> {
    rx: broadcast::Receiver<T>,
}

impl<T: Clone> Fanout<T> {
    /// `capacity` is how many items a subscriber may fall behind before it starts losing them.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            tx,
            published: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Hands `item` to every current subscriber. Never blocks; with no subscriber the item
    /// is simply discarded.
    pub fn publish(&self, item: T) {
        self.published.fetch_add(1, Ordering::Relaxed);
        // An error only means nobody is subscribed right now, which is normal.
        let _ = self.tx.send(item);
    }

    pub fn subscribe(&self) -> Subscriber<T> {
        Subscriber {
            rx: self.tx.subscribe(),
        }
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

impl<T: Clone> Subscriber<T> {
    /// Waits for the next item.
    pub async fn next(&mut self) -> Next<T> {
        match self.rx.recv().await {
            Ok(item) => Next::Item(item),
            Err(broadcast::error::RecvError::Lagged(n)) => Next::Dropped(n),
            Err(broadcast::error::RecvError::Closed) => Next::Closed,
        }
    }

    /// The next item if one is already waiting; `None` when there is nothing new yet.
    pub fn try_next(&mut self) -> Option<Next<T>> {
        match self.rx.try_recv() {
            Ok(item) => Some(Next::Item(item)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Next::Dropped(n)),
            Err(broadcast::error::TryRecvError::Closed) => Some(Next::Closed),
            Err(broadcast::error::TryRecvError::Empty) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_subscriber_loses_the_oldest_items_and_the_others_lose_none() {
        let fanout = Fanout::new(4);
        let mut stalled = fanout.subscribe();
        let mut reader = fanout.subscribe();

        let mut got = Vec::new();
        for i in 0..10u32 {
            fanout.publish(i);
            // The reader keeps up; the stalled one reads nothing.
            match reader.try_next() {
                Some(Next::Item(v)) => got.push(v),
                other => panic!("reader should keep up, got {other:?}"),
            }
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());

        // 10 published, room for 4: the first 6 are gone for the stalled one alone.
        assert_eq!(stalled.try_next(), Some(Next::Dropped(6)));
        let rest: Vec<u32> = std::iter::from_fn(|| match stalled.try_next() {
            Some(Next::Item(v)) => Some(v),
            _ => None,
        })
        .collect();
        assert_eq!(rest, vec![6, 7, 8, 9]);
        assert_eq!(fanout.published(), 10);
    }

    #[test]
    fn publishing_never_blocks_even_with_nobody_reading() {
        let fanout = Fanout::new(2);
        let _idle = fanout.subscribe();
        for i in 0..10_000u32 {
            fanout.publish(i);
        }
        assert_eq!(fanout.published(), 10_000);
        assert_eq!(fanout.subscribers(), 1);
    }

    #[tokio::test]
    async fn subscribers_see_closed_when_the_producer_goes_away() {
        let fanout = Fanout::<u8>::new(2);
        let mut sub = fanout.subscribe();
        fanout.publish(1);
        drop(fanout);
        assert_eq!(sub.next().await, Next::Item(1));
        assert_eq!(sub.next().await, Next::Closed);
    }
}
