//! CUDA kernels (feature `cuda`): hand-written in `kernels.cu`, compiled once per process at run
//! time with NVRTC (so building needs no CUDA toolkit, running needs the driver and
//! libnvrtc.so.13) and launched through candle's own cudarc.
//!
//! Mixing kernels: 256 threads per block, one warp per (b, n) row, 128-bit loads and stores
//! (4 x f32, 8 x bf16/f16) when C is a multiple of the vector width and the pointers are 16-byte
//! aligned, scalar otherwise; the grid is capped at 8 blocks per SM (2048 resident threads, the
//! most an H100 SM holds) and the kernels loop over the remaining rows.
//! Ratio kernel: one block per sample, one warp per patch, both views in shared memory.

use crate::checks::contiguous_range;
use crate::error::{PatchMixError, Result};
use crate::ratio_config::{Grid, RatioConfig};
use candle_core::cuda_backend::cudarc::driver::{
    sys, CudaFunction, CudaSlice, CudaView, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDevice, CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, Device, Layout, Shape, Tensor};
use ops::nvrtc::NvrtcModule;

/// The CUDA C++ source of every kernel of this crate.
pub const KERNELS_CU: &str = include_str!("kernels.cu");
/// [`KERNELS_CU`], compiled once per process (NVRTC names the file `patchmix.cu`).
static KERNELS: NvrtcModule = NvrtcModule::new("patchmix", KERNELS_CU);
const BLOCK: u32 = 256;
const BLOCKS_PER_SM: u32 = 8;

/// Compiles [`KERNELS_CU`] with NVRTC (once per process) and returns the PTX text. Needs only
/// libnvrtc, not a device, so it is testable on a machine without a GPU.
pub fn compile_kernels() -> Result<&'static str> {
    KERNELS.ptx().map_err(|e| PatchMixError::Cuda {
        kernel: "patchmix.cu (NVRTC compile)".into(),
        reason: e.log,
    })
}

/// Opens CUDA device `ordinal`, or says clearly why not (no GPU, no driver, bad ordinal).
pub fn cuda_device(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| PatchMixError::NoCudaDevice {
        ordinal,
        reason: e.to_string(),
    })
}

fn func(dev: &CudaDevice, name: &str) -> candle_core::Result<CudaFunction> {
    // A compile failure as this crate's error, naming the source file.
    compile_kernels()?;
    KERNELS.function(dev, name)
}

/// Blocks for `rows` rows at 8 rows (warps) per block, capped to fill the device once.
fn grid_for_rows(dev: &CudaDevice, rows: usize) -> candle_core::Result<u32> {
    let sms = dev
        .cuda_stream()
        .context()
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .w()? as u32;
    let need = rows.div_ceil((BLOCK / 32) as usize).max(1);
    Ok((need.min(u32::MAX as usize) as u32).min(sms.max(1) * BLOCKS_PER_SM))
}

fn aligned16<T>(dev: &CudaDevice, v: &CudaView<'_, T>) -> bool {
    let stream = dev.cuda_stream();
    let (ptr, _sync) = v.device_ptr(&stream);
    ptr % 16 == 0
}

/// The row-wise mixing kernel `{op}_{vec|scalar}_{sfx}` and its launch geometry (a warp per (b, n) row):
/// the 16-byte vector variant when C is a multiple of the vector width and every operand is aligned.
fn row_kernel<T>(
    dev: &CudaDevice,
    op: &str,
    sfx: &str,
    rows: usize,
    c: usize,
    aligned: bool,
) -> candle_core::Result<(CudaFunction, LaunchConfig, u32, u32)> {
    let kind = if aligned && c.is_multiple_of(16 / std::mem::size_of::<T>()) {
        "vec"
    } else {
        "scalar"
    };
    let f = func(dev, &format!("{op}_{kind}_{sfx}"))?;
    let cfg = LaunchConfig {
        grid_dim: (grid_for_rows(dev, rows)?, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    Ok((f, cfg, to_u32("rows (B*N)", rows)?, to_u32("C", c)?))
}

fn to_u32(what: &'static str, v: usize) -> candle_core::Result<u32> {
    u32::try_from(v).map_err(|_| {
        PatchMixError::Param {
            name: what,
            value: v.to_string(),
            reason: "exceeds the CUDA kernels' 32-bit index range",
        }
        .into()
    })
}

fn suffix(s: &CudaStorageSlice) -> Option<&'static str> {
    match s {
        CudaStorageSlice::F32(_) => Some("f32"),
        CudaStorageSlice::BF16(_) => Some("bf16"),
        CudaStorageSlice::F16(_) => Some("f16"),
        _ => None,
    }
}

fn cuda_dtype_error(op: &'static str, s: &CudaStorage) -> candle_core::Error {
    use candle_core::backend::BackendStorage;
    PatchMixError::DType {
        op,
        tensor: "fg/bg/third input",
        got: s.dtype(),
        expected: "f32, bf16 or f16 on CUDA, shared by all inputs".into(),
    }
    .into()
}

/// Forward mixing on CUDA; see `mix_fwd` in kernels.cu.
pub(crate) fn mix_fwd(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> candle_core::Result<(CudaStorage, Shape)> {
    const OP: &str = "patchmix-fwd";
    let (o1, e1) = contiguous_range(OP, "fg", l1)?;
    let (o2, _) = contiguous_range(OP, "bg", l2)?;
    let (o3, _) = contiguous_range(OP, "ratio", l3)?;
    let c = *l1.dims().last().unwrap_or(&1);
    let len = e1 - o1;
    let rows = if c == 0 { 0 } else { len / c };
    let dev = &s1.device;
    fn go<T: DeviceRepr>(
        dev: &CudaDevice,
        sfx: &str,
        (fg, o1): (&CudaSlice<T>, usize),
        (bg, o2): (&CudaSlice<T>, usize),
        (r, o3): (&CudaSlice<T>, usize),
        rows: usize,
        c: usize,
    ) -> candle_core::Result<CudaSlice<T>> {
        let len = rows * c;
        // SAFETY: every element is written by the kernel below (each row's lanes cover 0..c).
        let out = unsafe { dev.alloc::<T>(len.max(1)) }?;
        if len == 0 {
            return Ok(out);
        }
        let fg = fg.slice(o1..o1 + len);
        let bg = bg.slice(o2..o2 + len);
        let r = r.slice(o3..o3 + rows);
        let aligned = aligned16(dev, &fg) && aligned16(dev, &bg);
        let (f, cfg, rows32, c32) = row_kernel::<T>(dev, "patchmix_fwd", sfx, rows, c, aligned)?;
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&fg).arg(&bg).arg(&r).arg(&out).arg(&rows32).arg(&c32);
        // SAFETY: argument types and counts match `patchmix_fwd_*` in kernels.cu; the views
        // hold rows*c (fg, bg, out) and rows (r) elements.
        unsafe { b.launch(cfg) }.w()?;
        Ok(out)
    }
    let sfx = suffix(&s1.slice).ok_or_else(|| cuda_dtype_error(OP, s1))?;
    let slice = match (&s1.slice, &s2.slice, &s3.slice) {
        (CudaStorageSlice::F32(a), CudaStorageSlice::F32(b), CudaStorageSlice::F32(r)) => {
            CudaStorageSlice::F32(go(dev, sfx, (a, o1), (b, o2), (r, o3), rows, c)?)
        }
        (CudaStorageSlice::BF16(a), CudaStorageSlice::BF16(b), CudaStorageSlice::BF16(r)) => {
            CudaStorageSlice::BF16(go(dev, sfx, (a, o1), (b, o2), (r, o3), rows, c)?)
        }
        (CudaStorageSlice::F16(a), CudaStorageSlice::F16(b), CudaStorageSlice::F16(r)) => {
            CudaStorageSlice::F16(go(dev, sfx, (a, o1), (b, o2), (r, o3), rows, c)?)
        }
        _ => return Err(cuda_dtype_error(OP, s1)),
    };
    let out = CudaStorage {
        slice,
        device: dev.clone(),
    };
    Ok((out, l1.shape().clone()))
}

/// Fused backward on CUDA; writes the packed `[d_fg | d_bg | d_r]` buffer.
pub(crate) fn mix_bwd(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    ratio: &Tensor,
) -> candle_core::Result<(CudaStorage, Shape)> {
    const OP: &str = "patchmix-bwd";
    let (o1, e1) = contiguous_range(OP, "fg", l1)?;
    let (o2, _) = contiguous_range(OP, "bg", l2)?;
    let (o3, _) = contiguous_range(OP, "grad", l3)?;
    let (rs, rl) = ratio.storage_and_layout();
    let (or, er) = contiguous_range(OP, "ratio", rl)?;
    let rs = match &*rs {
        candle_core::Storage::Cuda(s) => s,
        _ => {
            return Err(PatchMixError::Device {
                op: OP,
                tensor: "ratio",
                other: "fg",
                got: ratio.device().location(),
                expected: candle_core::DeviceLocation::Cuda { gpu_id: 0 },
            }
            .into())
        }
    };
    let c = *l1.dims().last().unwrap_or(&1);
    let rows = er - or;
    let len = e1 - o1;
    let dev = &s1.device;
    #[allow(clippy::too_many_arguments)]
    fn go<T: DeviceRepr>(
        dev: &CudaDevice,
        sfx: &str,
        (fg, o1): (&CudaSlice<T>, usize),
        (bg, o2): (&CudaSlice<T>, usize),
        (g, o3): (&CudaSlice<T>, usize),
        (r, or): (&CudaSlice<T>, usize),
        rows: usize,
        c: usize,
    ) -> candle_core::Result<CudaSlice<T>> {
        let len = rows * c;
        let total = 2 * len + rows;
        // SAFETY: the kernel writes every element of d_fg, d_bg (lanes cover each row) and d_r.
        let out = unsafe { dev.alloc::<T>(total.max(1)) }?;
        if rows == 0 {
            return Ok(out);
        }
        let fg = fg.slice(o1..o1 + len);
        let bg = bg.slice(o2..o2 + len);
        let g = g.slice(o3..o3 + len);
        let r = r.slice(or..or + rows);
        let aligned = aligned16(dev, &fg) && aligned16(dev, &bg) && aligned16(dev, &g);
        let (f, cfg, rows32, c32) = row_kernel::<T>(dev, "patchmix_bwd", sfx, rows, c, aligned)?;
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&fg)
            .arg(&bg)
            .arg(&g)
            .arg(&r)
            .arg(&out)
            .arg(&rows32)
            .arg(&c32);
        // SAFETY: argument types and counts match `patchmix_bwd_*` in kernels.cu; `out` holds
        // 2*rows*c + rows elements, the inputs rows*c (fg, bg, g) and rows (r).
        unsafe { b.launch(cfg) }.w()?;
        Ok(out)
    }
    let sfx = suffix(&s1.slice).ok_or_else(|| cuda_dtype_error(OP, s1))?;
    let slice = match (&s1.slice, &s2.slice, &s3.slice, &rs.slice) {
        (
            CudaStorageSlice::F32(a),
            CudaStorageSlice::F32(b),
            CudaStorageSlice::F32(g),
            CudaStorageSlice::F32(r),
        ) => CudaStorageSlice::F32(go(dev, sfx, (a, o1), (b, o2), (g, o3), (r, or), rows, c)?),
        (
            CudaStorageSlice::BF16(a),
            CudaStorageSlice::BF16(b),
            CudaStorageSlice::BF16(g),
            CudaStorageSlice::BF16(r),
        ) => CudaStorageSlice::BF16(go(dev, sfx, (a, o1), (b, o2), (g, o3), (r, or), rows, c)?),
        (
            CudaStorageSlice::F16(a),
            CudaStorageSlice::F16(b),
            CudaStorageSlice::F16(g),
            CudaStorageSlice::F16(r),
        ) => CudaStorageSlice::F16(go(dev, sfx, (a, o1), (b, o2), (g, o3), (r, or), rows, c)?),
        _ => return Err(cuda_dtype_error(OP, s1)),
    };
    let out = CudaStorage {
        slice,
        device: dev.clone(),
    };
    Ok((out, Shape::from(2 * len + rows)))
}

/// Lesion-aware ratio on CUDA; see `ratio_kernel` in kernels.cu.
pub(crate) fn ratio_fwd(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    cfg: &RatioConfig,
    seed: u64,
) -> candle_core::Result<(CudaStorage, Shape)> {
    const OP: &str = "patchmix-ratio";
    let (o1, _) = contiguous_range(OP, "sal_fg", l1)?;
    let (o2, _) = contiguous_range(OP, "sal_bg", l2)?;
    let (batch, _, h, w) = l1.shape().dims4()?;
    let g = Grid::new(h, w, cfg.patch);
    let np = g.np();
    let shared = 2 * np * std::mem::size_of::<f32>();
    if shared > 48 * 1024 {
        return Err(PatchMixError::Param {
            name: "patch",
            value: cfg.patch.to_string(),
            reason:
                "more than 6144 patches per image do not fit the CUDA ratio kernel's shared memory",
        }
        .into());
    }
    let dev = &s1.device;
    let go = |sfx: &str| -> candle_core::Result<(LaunchConfig, CudaFunction)> {
        let f = func(dev, &format!("patchmix_ratio_{sfx}"))?;
        let cfg = LaunchConfig {
            grid_dim: (to_u32("B", batch.max(1))?, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        Ok((cfg, f))
    };
    let (h32, w32, p32) = (to_u32("H", h)?, to_u32("W", w)?, to_u32("P", cfg.patch)?);
    let (wp32, np32) = (to_u32("W/P", g.wp)?, to_u32("N", np)?);
    macro_rules! launch {
        ($a:expr, $b:expr, $t:ty, $sfx:expr, $variant:ident) => {{
            let plane = batch * h * w;
            // SAFETY: the kernel writes all batch * np outputs (threads stride over np per block).
            let out = unsafe { dev.alloc::<$t>((batch * np).max(1)) }?;
            if batch > 0 {
                let a = $a.slice(o1..o1 + plane);
                let b = $b.slice(o2..o2 + plane);
                let (lc, f) = go($sfx)?;
                let stream = dev.cuda_stream();
                let mut bld = stream.launch_builder(&f);
                bld.arg(&a).arg(&b).arg(&out);
                bld.arg(&h32).arg(&w32).arg(&p32).arg(&wp32).arg(&np32);
                bld.arg(&seed)
                    .arg(&cfg.noise)
                    .arg(&cfg.floor)
                    .arg(&cfg.alpha);
                // SAFETY: argument types and counts match `patchmix_ratio_*` in kernels.cu.
                unsafe { bld.launch(lc) }.w()?;
            }
            CudaStorageSlice::$variant(out)
        }};
    }
    let slice = match (&s1.slice, &s2.slice) {
        (CudaStorageSlice::F32(a), CudaStorageSlice::F32(b)) => launch!(a, b, f32, "f32", F32),
        (CudaStorageSlice::BF16(a), CudaStorageSlice::BF16(b)) => {
            launch!(a, b, half::bf16, "bf16", BF16)
        }
        (CudaStorageSlice::F16(a), CudaStorageSlice::F16(b)) => {
            launch!(a, b, half::f16, "f16", F16)
        }
        _ => return Err(cuda_dtype_error(OP, s1)),
    };
    let out = CudaStorage {
        slice,
        device: dev.clone(),
    };
    Ok((out, Shape::from((batch, np))))
}
