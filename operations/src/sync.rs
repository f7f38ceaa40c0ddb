//! Locking a `std::sync::Mutex` that a panic elsewhere may have poisoned.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking the guard even when another thread panicked while holding it.
///
/// Every mutex in this crate guards state that each update leaves consistent (a single assignment, a push, a
/// map insert), so a panic in one task must not turn every later lock into a second panic: the data behind a
/// poisoned lock is still the data the other users expect.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
