//! Taking a lock whatever panicked while it was held last.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, also after a thread panicked holding it. For state a panic cannot leave half
/// changed (counters, caches, slots, log buffers): a request that panicked must
/// not stop every later one from counting, caching or logging.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::lock;
    use std::sync::Mutex;

    #[test]
    fn a_poisoned_lock_is_still_taken() {
        let m = Mutex::new(1);
        let _ = std::panic::catch_unwind(|| {
            let _held = m.lock().unwrap();
            panic!("while holding the lock");
        });
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
