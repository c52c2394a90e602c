//! Memory for big state tables, mapped from the kernel rather than taken from malloc.
//!
//! A state table of millions of keys is the largest allocation weir makes, and it is replaced
//! by one twice its size each time it grows. Through glibc's malloc, freeing the old table
//! raised malloc's mmap threshold to the table's size (its dynamic threshold), after which
//! every buffer below it came from the per-thread arenas and stayed there once freed: a
//! 2M-event batch peaked at twice its live heap. Tables of a megabyte or more are mapped and
//! unmapped here instead, so malloc never sees them, and their memory goes back to the
//! kernel the moment a table is replaced or shrunk.

#![allow(unsafe_code)]

use std::alloc::Layout;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Global};

/// Allocations of at least this many bytes are mapped.
const MAP_FROM: usize = 1 << 20;

/// mmap gives page-aligned memory; larger alignments go to malloc.
const PAGE: usize = 4096;

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
}
