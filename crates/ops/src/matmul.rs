//! Dense matrix products written straight into caller-owned buffers (CPU, through the `gemm`
//! crate that candle's own matmul uses).
//!
//! candle's `Tensor::matmul` allocates a fresh output each call, needs its operands as tensors
//! (a copy for a slice), cannot add into an existing buffer, and splits every product of a
//! batched matmul across all threads, which costs more than it gains for the many small
//! products of attention (197 x 96 x 197 per head). The fused CPU ops use this instead: a
//! [`MatRef`] is any strided view of a slice (a transpose or a column block of a wider matrix is
//! just other strides, no copy), [`matmul_into`] writes or accumulates
//! `dst = [dst +] scale * lhs · rhs`, and [`Threads`] chooses between gemm's own threading and
//! a single thread (for callers that already run products in parallel).
//!
//! Shapes: `lhs (m, k)`, `rhs (k, n)`, `dst (m, n)`.

use gemm::Parallelism;

/// Element types the products support.
pub trait GemmScalar: Copy + Send + Sync + 'static {
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
}

impl GemmScalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl GemmScalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// Who runs a product's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// All of rayon's current pool (gemm splits the product).
    Pool,
    /// The calling thread only.
    Caller,
}

impl Threads {
    fn parallelism(self) -> Parallelism {
        match self {
            Threads::Pool if rayon::current_num_threads() > 1 => {
                Parallelism::Rayon(rayon::current_num_threads())
            }
            _ => Parallelism::None,
        }
    }
}

/// A read-only `(rows, cols)` matrix view of a slice: element `(i, j)` is
/// `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// Number of elements a strided `(rows, cols)` view reaches (0 when empty).
fn extent(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * row_stride + (cols - 1) * col_stride + 1
    }
}

impl<'a, T> MatRef<'a, T> {
    /// A strided view; panics if it reaches past the end of `data` (a caller bug, not input).
    pub fn new(
        data: &'a [T],
        (rows, cols): (usize, usize),
        (row_stride, col_stride): (usize, usize),
    ) -> Self {
        let need = extent(rows, cols, row_stride, col_stride);
        assert!(
            need <= data.len(),
            "MatRef: a ({rows}, {cols}) view with strides ({row_stride}, {col_stride}) needs {need} elements, the slice has {}",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// The row-major `(rows, cols)` matrix held contiguously at the start of `data`.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::new(data, (rows, cols), (cols, 1))
    }

    /// The transposed view `(cols, rows)` (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            data: self.data,
        }
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}

/// `dst = scale * lhs · rhs`, or `dst += scale * lhs · rhs` when `accumulate`; `dst` is the
/// row-major `(m, n)` matrix at the start of `dst` with row stride `dst_row_stride` (>= n).
///
/// Panics when the shapes do not chain or `dst` is too short (caller bugs).
pub fn matmul_into<T: GemmScalar>(
    dst: &mut [T],
    dst_row_stride: usize,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    scale: T,
    accumulate: bool,
    threads: Threads,
) {
    let (m, k) = lhs.shape();
    let (k2, n) = rhs.shape();
    assert_eq!(
        k,
        k2,
        "matmul_into: lhs {:?} and rhs {:?} do not chain",
        lhs.shape(),
        rhs.shape()
    );
    assert!(
        dst_row_stride >= n || m <= 1,
        "matmul_into: dst row stride {dst_row_stride} < {n}"
    );
    let need = extent(m, n, dst_row_stride, 1);
    assert!(
        need <= dst.len(),
        "matmul_into: dst needs {need} elements, has {}",
        dst.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_row_stride.max(n)).take(m) {
                row[..n].fill(T::ZERO);
            }
        }
        return;
    }
    // SAFETY: every view was bounds-checked above (`extent` is the furthest element each of
    // the m x n, m x k and k x n index sets touches), `dst` is an exclusive borrow so it aliases
    // neither operand, and T is f32 or f64, which gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::ONE,
            scale,
            false,
            false,
            false,
            threads.parallelism(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn products_transposes_and_accumulation_match_the_naive_loop() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        for threads in [Threads::Pool, Threads::Caller] {
            let mut c = vec![9.0; m * n];
            matmul_into(
                &mut c,
                n,
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&b, k, n),
                1.0,
                false,
                threads,
            );
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-12);
            }
            // Accumulate 2 * (a · b) on top: 3 * want.
            matmul_into(
                &mut c,
                n,
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&b, k, n),
                2.0,
                true,
                threads,
            );
            for (x, y) in c.iter().zip(&want) {
                assert!((x - 3.0 * y).abs() < 1e-12);
            }
        }
        // bᵀ · aᵀ = (a · b)ᵀ through transposed views, into a wider destination (row stride 8).
        let mut ct = vec![0.0; n * 8];
        matmul_into(
            &mut ct,
            8,
            MatRef::row_major(&b, k, n).t(),
            MatRef::row_major(&a, m, k).t(),
            1.0,
            false,
            Threads::Caller,
        );
        for i in 0..m {
            for j in 0..n {
                assert!((ct[j * 8 + i] - want[i * n + j]).abs() < 1e-12);
            }
        }
    }

    #[test]
    #[should_panic(expected = "needs")]
    fn a_view_past_the_slice_is_refused() {
        let a = [0f32; 5];
        let _ = MatRef::row_major(&a, 2, 3);
    }
}
