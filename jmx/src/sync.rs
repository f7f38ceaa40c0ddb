//! Locking a `std::sync::Mutex` that a panic elsewhere may have poisoned.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking the guard even when another thread panicked while holding it.
///
/// The client's mutexes guard a connection pool, the current session and the outage backoff, each changed by one
/// assignment or push at a time: the data behind a poisoned lock is still consistent, and one panicking caller
/// must not make every later call panic too.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
