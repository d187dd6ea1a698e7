//! Copy buffers lent while bytes are in flight: to a relay direction
//! ([`crate::relay`]) and to a socket's read-ahead ([`crate::read_ahead`]).
//!
//! A relay direction takes a buffer to read into and gives it back as soon as a
//! read finds nothing and everything read has been written; a read-ahead gives
//! its buffer back as soon as its reader has taken every byte. So an idle tunnel
//! holds none. Each thread keeps a few free buffers, so a busy relay that keeps
//! going quiet for a moment (most reads on a fast link) does not allocate and
//! zero 64 KiB every time.

use std::cell::RefCell;

/// What a buffer holds: a read of this much is one syscall on TCP and four full
/// TLS records.
pub(crate) const BUF_SIZE: usize = 64 * 1024;

/// Room beyond [`BUF_SIZE`], so that a relay can start its bytes at a chosen
/// offset from a 64-byte boundary ([`crate::relay::TLS_WRITE_OFFSET`]).
pub(crate) const SLACK: usize = crate::relay::ALIGN;

/// Free buffers a thread keeps (at most 512 KiB); more are freed.
const KEEP: usize = 8;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of [`BUF_SIZE`] + [`SLACK`] bytes, from this thread's free ones if it has any.
pub(crate) fn take() -> Box<[u8]> {
    FREE.try_with(|free| free.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0; BUF_SIZE + SLACK].into_boxed_slice())
}

/// Gives `buf` back: kept for the next [`take`] on this thread, or freed.
pub(crate) fn give(buf: Box<[u8]>) {
    // Fails only while the thread exits: the buffer is then simply freed.
    let _ = FREE.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < KEEP {
            free.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_and_the_thread_keeps_only_a_few() {
        let first = take();
        assert_eq!(first.len(), BUF_SIZE + SLACK);
        let at = first.as_ptr();
        give(first);
        let again = take();
        assert_eq!(again.as_ptr(), at, "the free buffer is reused");

        for _ in 0..KEEP + 3 {
            give(vec![0; BUF_SIZE + SLACK].into_boxed_slice());
        }
        assert_eq!(FREE.with(|free| free.borrow().len()), KEEP);
    }
}
