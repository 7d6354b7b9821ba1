//! What every CPU custom op of this crate needs: a storage's elements as a slice, and an
//! output buffer.

use candle_core::{CpuStorage, Layout, Result, WithDType};

/// The elements `[start, end)` of a contiguous layout over `s`, or the error
/// "`{what}` must be contiguous" (`what` names the op and the argument, e.g. "layer_norm: input").
pub(crate) fn contiguous_as<'a, T: WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// [`contiguous_as`] for f32, the dtype of the fused ops.
pub(crate) fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    contiguous_as(s, l, what)
}

/// Buffers of at least this many elements are zero-filled by the rayon pool.
const PARALLEL_FILL: usize = 1 << 16;

/// A buffer of `n` copies of `zero` (the output of an op that then fills it). `vec![zero; n]`
/// zeroes on the calling thread: for activation-sized buffers a serial pass (with the page
/// faults of fresh memory) while the pool's other threads wait; large buffers are filled by
/// the pool instead.
pub(crate) fn zeroed<T: Copy + Send + Sync>(n: usize, zero: T) -> Vec<T> {
    use rayon::iter::ParallelExtend;
    if n < PARALLEL_FILL {
        return vec![zero; n];
    }
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(zero, n));
    v
}
