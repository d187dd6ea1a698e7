//! Which local sources were already told why their tunnel could not open, so
//! a source that keeps sending gets one warning, not one per attempt.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

/// The last error reported for each source, at most `capacity` of them.
#[derive(Debug)]
pub(super) struct Refusals {
    capacity: usize,
    last: Mutex<HashMap<SocketAddr, String>>,
}

impl Refusals {
    pub(super) fn new(capacity: usize) -> Self {
        Refusals {
            capacity: capacity.max(1),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Records that `source`'s tunnel failed with `error`; true if that is news
    /// (the first failure of this source, or a different one), to be warned about.
    pub(super) fn is_news(&self, source: SocketAddr, error: &str) -> bool {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.get(&source).is_some_and(|seen| seen == error) {
            return false;
        }
        if last.len() >= self.capacity && !last.contains_key(&source) {
            // Bounded: forgetting only means a source may be warned again.
            last.clear();
        }
        last.insert(source, error.to_owned());
        true
    }

    /// `source`'s tunnel opened: a later failure is news again.
    pub(super) fn forget(&self, source: SocketAddr) {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_hears_each_error_once() {
        let r = Refusals::new(2);
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        assert!(r.is_news(a, "denied: nope"));
        assert!(!r.is_news(a, "denied: nope"));
        assert!(r.is_news(b, "denied: nope"), "another source");
        assert!(r.is_news(a, "timeout: slow"), "another error");
        assert!(!r.is_news(a, "timeout: slow"));
        r.forget(a);
        assert!(r.is_news(a, "timeout: slow"), "after a success");
        let c: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        assert!(r.is_news(c, "denied: nope"), "over capacity");
        assert_eq!(r.last.lock().unwrap().len(), 1, "bounded");
    }
}
