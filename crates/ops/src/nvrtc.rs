//! CUDA C++ kernels compiled at run time with NVRTC, once per process (feature `cuda`).
//!
//! Building needs no CUDA toolkit; running needs the driver and libnvrtc. A [`NvrtcModule`] is a
//! `static` holding a kernel source: the first launch compiles it to PTX (a failed compile is kept
//! too, so it is not retried per call) and candle's device loads the PTX as a module of that name,
//! once per device, through candle's own cudarc (so its version always matches candle's).

use candle_core::cuda_backend::cudarc::driver::CudaFunction;
use candle_core::cuda_backend::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use candle_core::cuda_backend::CudaDevice;
use std::sync::OnceLock;

/// NVRTC refused a kernel source: the module's name and the compiler's log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("NVRTC compile of `{module}`: {log}")]
pub struct NvrtcError {
    /// The [`NvrtcModule`]'s name.
    pub module: &'static str,
    /// What NVRTC said.
    pub log: String,
}

/// A CUDA C++ source and its PTX, compiled on first use.
pub struct NvrtcModule {
    name: &'static str,
    source: &'static str,
    ptx: OnceLock<Result<String, String>>,
}

impl NvrtcModule {
    /// `name`: the module name candle caches the loaded PTX under (unique per source in the
    /// process) and the file name NVRTC's messages use; `source`: CUDA C++ with `extern "C"`
    /// kernels.
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            ptx: OnceLock::new(),
        }
    }

    /// The CUDA C++ source.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The PTX text, compiled on the first call. Needs only libnvrtc, not a device.
    pub fn ptx(&self) -> Result<&str, NvrtcError> {
        self.ptx
            .get_or_init(|| {
                let opts = CompileOptions {
                    name: Some(format!("{}.cu", self.name)),
                    ..Default::default()
                };
                compile_ptx_with_opts(self.source, opts)
                    .map(|ptx| ptx.to_src())
                    .map_err(|e| format!("{e:?}"))
            })
            .as_deref()
            .map_err(|log| NvrtcError {
                module: self.name,
                log: log.to_string(),
            })
    }

    /// Kernel `kernel` of this module on `dev` (compiling and loading the module if needed);
    /// launch it on the device's stream (`dev.cuda_stream().launch_builder(&f)`).
    pub fn function(&self, dev: &CudaDevice, kernel: &str) -> candle_core::Result<CudaFunction> {
        let ptx = self.ptx().map_err(candle_core::Error::wrap)?;
        Ok(dev
            .get_or_load_custom_func(kernel, self.name, ptx)?
            .into_cuda_function())
    }
}
