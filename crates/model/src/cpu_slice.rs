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

/// The contiguous elements of `N` storages that share one float dtype.
pub(crate) enum FloatSlices<'a, const N: usize> {
    F32([&'a [f32]; N]),
    F64([&'a [f64]; N]),
}

/// `args`: `(storage, layout, name)`, the name saying op and argument for errors (e.g.
/// "linear: input"). All f32 or all f64, each contiguous, or an error naming them.
pub(crate) fn float_slices<'a, const N: usize>(
    args: [(&'a CpuStorage, &Layout, &str); N],
) -> Result<FloatSlices<'a, N>> {
    use candle_core::backend::BackendStorage;
    let all = |dtype| args.iter().all(|(s, _, _)| s.dtype() == dtype);
    if all(candle_core::DType::F32) {
        let mut out = [&[][..]; N];
        for (o, (s, l, what)) in out.iter_mut().zip(args) {
            *o = contiguous_as(s, l, what)?;
        }
        Ok(FloatSlices::F32(out))
    } else if all(candle_core::DType::F64) {
        let mut out = [&[][..]; N];
        for (o, (s, l, what)) in out.iter_mut().zip(args) {
            *o = contiguous_as(s, l, what)?;
        }
        Ok(FloatSlices::F64(out))
    } else {
        let got: Vec<String> = args
            .iter()
            .map(|(s, _, what)| format!("{what} {:?}", s.dtype()))
            .collect();
        candle_core::bail!("{}: must be all f32 or all f64", got.join(", "))
    }
}
