//! Memory for big state tables, mapped from the kernel rather than taken from malloc.
//!
//! A state table of millions of keys is the largest allocation weir makes, and it is replaced
//! by one twice its size each time it grows. Through glibc's malloc, freeing the old table
//! raised malloc's mmap threshold to the table's size (its dynamic threshold), after which
//! every buffer below it came from the per-thread arenas and stayed there once freed: a
//! 2M-event batch peaked at twice its live heap. Tables of a megabyte or more are mapped and
//! unmapped here instead, so malloc never sees them, and their memory goes back to the
//! kernel the moment a table is replaced or shrunk.
//!
//! [`TrackedPages`] also remembers where a table's block is, so that a lookup can have the
//! CPU fetch the table's memory ahead ([`prefetch`]), and faults a big table's pages in on
//! all cores at once ([`fault_in`]).

#![allow(unsafe_code)]

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use allocator_api2::alloc::{AllocError, Allocator, Global};

/// Allocations of at least this many bytes are mapped.
const MAP_FROM: usize = 1 << 20;

/// mmap gives page-aligned memory; larger alignments go to malloc.
const PAGE: usize = 4096;

/// Hash tables of at least this many bytes have their pages faulted in on every core at once
/// (not the blocks of long keys, which fill up as keys come).
const FAULT_TOGETHER_FROM: usize = 8 << 20;

/// Bytes a thread faults in at a time (a huge page).
const FAULT_UNIT: usize = 2 << 20;

/// Faults in the pages of the fresh mapping `p..p + len` on every core (up to four) at once.
/// A table grown to the size a batch needs is written all over at once (its control bytes,
/// then its keys moved in at random places, then the batch's keys), so every page of it is
/// touched anyway; the kernel zeroes each page at its first touch, and on a virtual machine
/// whose memory was not touched before (or went back to the host) that took 60-180 ms for a
/// 2M-key batch's tables, on the batch loop alone while the decoders waited. On two cores it
/// takes half as long. Only a speed-up: the pages are zero either way.
///
/// The threads take the mapping a huge page at a time from a shared cursor rather than a
/// fixed share each: how long a page takes varies a lot here (memory the host has to find
/// first, or not), and with fixed halves the loop, done with its half, waited on the helper
/// with a core idle.
fn fault_in(p: NonNull<u8>, len: usize) {
    // Read once: the standard library asks the kernel and the cgroup files every time.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).min(4));
    if cores < 2 {
        return;
    }
    let base = p.as_ptr() as usize;
    let next = AtomicUsize::new(0);
    // One write per page: with huge pages the first fault maps 2 MiB, and the other writes to
    // it cost nothing.
    let touch = || {
        loop {
            let from = next.fetch_add(FAULT_UNIT, Ordering::Relaxed);
            if from >= len {
                break;
            }
            let mut at = from;
            while at < (from + FAULT_UNIT).min(len) {
                // SAFETY: `base + at` is inside the mapping, which nothing else uses yet; a
                // zero written to zeroed memory changes nothing.
                unsafe { std::ptr::write_volatile((base + at) as *mut u8, 0) };
                at += PAGE;
            }
        }
    };
    std::thread::scope(|scope| {
        // A helper that cannot be had leaves the units to the others.
        for _ in 1..cores {
            let _ = std::thread::Builder::new().name("weir-pages".into()).spawn_scoped(scope, touch);
        }
        touch();
    });
}

/// The allocator of the state tables; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TablePages;

fn mapped(layout: Layout) -> bool {
    layout.size() >= MAP_FROM && layout.align() <= PAGE
}

// SAFETY: memory is valid from `allocate` until `deallocate` with the same layout: mmap'd
// blocks are unmapped only there, and with their exact length; smaller blocks are malloc's.
unsafe impl Allocator for TablePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if !mapped(layout) {
            return Global.allocate(layout);
        }
        let len = layout.size();
        // SAFETY: a new private anonymous mapping, with no address hint, touches no memory
        // of this process.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(AllocError);
        }
        // A table is written all over as soon as it exists: huge pages, where the kernel
        // allows them, take one fault per 2 MiB instead of one per 4 KiB. Only advice.
        // SAFETY: `p..p + len` is the mapping just made.
        unsafe {
            libc::madvise(p, len, libc::MADV_HUGEPAGE);
        }
        let p = NonNull::new(p.cast::<u8>()).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, len))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if !mapped(layout) {
            // SAFETY: the caller passes a block this allocator gave with `layout`: malloc's.
            unsafe { Global.deallocate(ptr, layout) };
            return;
        }
        // SAFETY: the caller passes a block this allocator mapped with `layout.size()` bytes.
        unsafe {
            libc::munmap(ptr.as_ptr().cast(), layout.size());
        }
    }
}

/// [`TablePages`] for one hash table, which also remembers the block it allocated last: the
/// table's memory, since a table that grows or shrinks allocates its new block before it
/// frees the old one. A lookup then knows where its bucket is before it probes, and can
/// have the CPU fetch it ahead ([`prefetch`]) while it works on other keys.
#[derive(Debug, Default)]
pub struct TrackedPages {
    addr: AtomicUsize,
    len: AtomicUsize,
}

/// A clone serves the clone of a table, whose blocks are its own.
impl Clone for TrackedPages {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl TrackedPages {
    /// The address of the block allocated last, if it is `len` bytes long and still held.
    pub fn block(&self, len: usize) -> Option<usize> {
        let addr = self.addr.load(Ordering::Relaxed);
        (addr != 0 && self.len.load(Ordering::Relaxed) == len).then_some(addr)
    }
}

// SAFETY: every block is `TablePages`'s, allocated and freed by it with the same layout;
// the addresses remembered are never dereferenced here.
unsafe impl Allocator for TrackedPages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = TablePages.allocate(layout)?;
        if mapped(layout) && layout.size() >= FAULT_TOGETHER_FROM {
            fault_in(block.cast(), layout.size());
        }
        self.addr.store(block.cast::<u8>().as_ptr() as usize, Ordering::Relaxed);
        self.len.store(layout.size(), Ordering::Relaxed);
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if self.addr.load(Ordering::Relaxed) == ptr.as_ptr() as usize {
            self.addr.store(0, Ordering::Relaxed);
        }
        // SAFETY: the caller passes a block this allocator gave with `layout`: TablePages's.
        unsafe { TablePages.deallocate(ptr, layout) };
    }
}

/// Asks the CPU to bring the cache line holding `addr` in, without waiting for it. Only a
/// hint: no memory is read as far as the program goes, and any address will do.
#[inline]
pub fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults nor reads memory the program sees, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_mapped_blocks_hold_what_is_written() {
        for size in [64, MAP_FROM - 1, MAP_FROM, 3 * MAP_FROM + 17] {
            let layout = Layout::from_size_align(size, 16).unwrap();
            let block = TablePages.allocate(layout).unwrap();
            assert!(block.len() >= size);
            let p = block.cast::<u8>();
            // SAFETY: the block is `size` writable bytes until deallocated below.
            unsafe {
                p.as_ptr().write_bytes(0xAB, size);
                assert_eq!(*p.as_ptr().add(size - 1), 0xAB);
                TablePages.deallocate(p, layout);
            }
        }
    }

    /// A table's block big enough to be faulted in on every core is zeroed memory, all of it
    /// writable, whatever its length's remainder.
    #[test]
    fn big_table_blocks_are_faulted_in_zeroed() {
        let pages = TrackedPages::default();
        for size in [FAULT_TOGETHER_FROM, FAULT_TOGETHER_FROM + 3 * PAGE + 5] {
            let layout = Layout::from_size_align(size, 16).unwrap();
            let block = pages.allocate(layout).unwrap();
            let p = block.cast::<u8>();
            assert_eq!(pages.block(size), Some(p.as_ptr() as usize));
            // SAFETY: the block is `size` writable bytes until deallocated below.
            unsafe {
                let bytes = std::slice::from_raw_parts_mut(p.as_ptr(), size);
                assert!(bytes.iter().all(|&b| b == 0));
                bytes.fill(0x5A);
                assert!(bytes.iter().all(|&b| b == 0x5A));
                pages.deallocate(p, layout);
            }
            assert_eq!(pages.block(size), None);
        }
    }
}
