//! Output buffers for the CPU kernels.
//!
//! A (64, 196, 768) f32 output is 38.5 MB; glibc serves allocations above 32 MB with a fresh
//! `mmap` every time, so each call first-touches ~9400 4 KiB pages, and those page faults cost
//! about as much as the mixing itself. On Linux the buffer is marked `MADV_HUGEPAGE` before it is
//! touched, so it faults in 2 MiB pages (512x fewer faults) where transparent huge pages are in
//! `madvise` or `always` mode; elsewhere, or when the kernel refuses, this is a plain allocation.

/// Buffers smaller than this are left alone (they come from the heap and are rarely fresh).
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// An empty `Vec` with room for `len` elements, whose pages are not touched yet.
pub(crate) fn output_buffer<T>(len: usize) -> Vec<T> {
    let v: Vec<T> = Vec::with_capacity(len);
    advise_huge_pages(&v);
    v
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &Vec<T>) {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < HUGE_PAGE_MIN_BYTES {
        return;
    }
    // madvise needs a page-aligned start: advise the whole 4 KiB pages inside the buffer.
    const PAGE: usize = 4096;
    let start = v.as_ptr() as usize;
    let aligned = (start + PAGE - 1) & !(PAGE - 1);
    let len = (start + bytes).saturating_sub(aligned) & !(PAGE - 1);
    if len == 0 {
        return;
    }
    // SAFETY: [aligned, aligned + len) lies inside this Vec's allocation, which we own; the advice
    // changes only how the kernel backs the pages, never their contents. Failure is harmless.
    unsafe {
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_v: &Vec<T>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_have_the_requested_capacity_and_no_elements() {
        for len in [0usize, 1, 1000, (8 << 20) / 4 + 3] {
            let v = output_buffer::<f32>(len);
            assert!(v.capacity() >= len);
            assert!(v.is_empty());
        }
    }
}
