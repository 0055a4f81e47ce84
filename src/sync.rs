//! The one lock helper every module uses.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, and goes on through a poisoned lock: poisoning only means another thread
/// panicked while holding it, and every value roverd keeps behind a mutex (counters,
/// states, tables) is still whole and usable after that.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
