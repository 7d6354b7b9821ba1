//! Output buffers for the CPU kernels: [`output_buffer`] (room, nothing written) for kernels that
//! write every element, [`zeroed`] for kernels that accumulate into their output.
//!
//! A (64, 196, 768) f32 output is 38.5 MB; glibc serves allocations above 32 MB with a fresh
//! `mmap` every time, so each call first-touches ~9400 4 KiB pages, and those page faults cost
//! about as much as a light kernel itself. On Linux an [`output_buffer`] of 4 MiB or more is
//! marked `MADV_HUGEPAGE` before it is touched, so it faults in 2 MiB pages (512x fewer faults)
//! where transparent huge pages are in `madvise` or `always` mode; elsewhere, or when the kernel
//! refuses, this is a plain allocation.

use rayon::iter::ParallelExtend;

/// Buffers smaller than this are left alone (they come from the heap and are rarely fresh).
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// Buffers of at least this many elements are zero-filled by the rayon pool.
const PARALLEL_FILL: usize = 1 << 16;

/// An empty `Vec` with room for `len` elements, whose pages are not touched yet.
pub fn output_buffer<T>(len: usize) -> Vec<T> {
    let v: Vec<T> = Vec::with_capacity(len);
    advise_huge_pages(&v);
    v
}

/// A buffer of `n` copies of `zero` (the output of an op that then accumulates into it).
/// `vec![zero; n]` zeroes on the calling thread: for activation-sized buffers a serial pass (with
/// the page faults of fresh memory) while the pool's other threads wait; large buffers are filled
/// by the pool instead. No huge-page advice here: the model's fused ops were measured without it
/// (BENCHMARKS.md), and turning it on for them is a change to measure on its own.
pub fn zeroed<T: Copy + Send + Sync>(n: usize, zero: T) -> Vec<T> {
    if n < PARALLEL_FILL {
        return vec![zero; n];
    }
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(zero, n));
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

    #[test]
    fn zeroed_buffers_hold_n_zeros_below_and_above_the_parallel_fill() {
        for n in [
            0usize,
            3,
            PARALLEL_FILL - 1,
            PARALLEL_FILL,
            (8 << 20) / 4 + 3,
        ] {
            let v = zeroed(n, 0f32);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0.0));
        }
    }
}
