//! The process's allocator (mimalloc), counting the bytes each thread holds, so one message's
//! conversion can be held to a memory budget whatever shape the message has
//! ([`crate::fhir::budget::Budget::max_convert_mib`]). The count is per thread: the convert
//! thread allocates and frees a conversion's memory itself.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

/// Install with `#[global_allocator] static A: gateway::heap::Counted = gateway::heap::Counted;`.
pub struct Counted;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread. `const` and without a destructor, so
    /// it is safe to touch from inside the allocator.
    static NET: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    let _ = NET.try_with(|n| n.set(n.get().wrapping_add(delta)));
}

/// Net bytes this thread has allocated so far (0 when [`Counted`] is not the allocator).
pub fn thread_net() -> isize {
    NET.try_with(Cell::get).unwrap_or(0)
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
