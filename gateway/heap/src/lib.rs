//! The gateway's allocator (mimalloc), counting the bytes each thread holds, so one message's
//! conversion can be held to a memory budget whatever shape the message has (the gateway's
//! `[mapping.budget] max_convert_mib`). The count is per thread: the convert thread allocates
//! and frees a conversion's memory itself. The peak per thread serves the benchmarks.
//!
//! Its own crate because it is the one place that needs `unsafe` (a `GlobalAlloc`): the gateway
//! itself forbids it.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

/// Install with `#[global_allocator] static A: gateway_heap::Counted = gateway_heap::Counted;`.
pub struct Counted;

thread_local! {
    /// (bytes allocated minus bytes freed by this thread, the highest that reached since
    /// [`reset_thread_peak`]): one thread-local, so each allocation touches it once. `const`
    /// and without a destructor, so safe to touch from inside the allocator.
    static HEAP: Cell<(isize, isize)> = const { Cell::new((0, 0)) };
}

#[inline]
fn add(delta: isize) {
    let _ = HEAP.try_with(|h| {
        let (net, peak) = h.get();
        let net = net.wrapping_add(delta);
        h.set((net, peak.max(net)));
    });
}

/// Net bytes this thread has allocated so far (0 when [`Counted`] is not the allocator).
pub fn thread_net() -> isize {
    HEAP.try_with(|h| h.get().0).unwrap_or(0)
}

/// Starts a new peak for this thread at what it holds now.
pub fn reset_thread_peak() {
    let _ = HEAP.try_with(|h| h.set((h.get().0, h.get().0)));
}

/// The most this thread held since [`reset_thread_peak`].
pub fn thread_peak() -> isize {
    HEAP.try_with(|h| h.get().1).unwrap_or(0)
}

// SAFETY: every call is forwarded to mimalloc unchanged; the counting touches only a
// thread-local integer.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}
