//! Small layers with gradients everywhere (candle 0.11's fused LayerNorm has no backward).
//!
//! - [`Linear`]: `(.., in)` -> `(.., out)`, weight `(out, in)` as PyTorch stores it; one graph
//!   node on the CPU ([`ops::linear`]).
//! - [`LayerNorm`]: `(.., C)` -> `(.., C)`, fused CPU kernels ([`ops::layer_norm`]) or
//!   composed from primitive ops elsewhere, so it has a backward.
//! - [`Conv2d`]: `(B, Cin, H, W)` -> `(B, Cout, H', W')`, no bias unless built with one;
//!   on the CPU im2col + gemm ([`ops::im2col`], 1x1 stride-1 convs without the unfold),
//!   elsewhere one matmul for 1x1 stride-1 convs and candle's conv otherwise; both have far
//!   faster backwards than candle's CPU conv.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use ops::im2col::conv2d_im2col;

/// PyTorch's default init of `nn.Linear` and `nn.Conv2d` weights (and biases):
/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, `fan_in` = inputs per output (`cin k k` for a conv).
pub fn pytorch_default_init(fan_in: usize) -> Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

/// Fully connected layer `y = x W^T + b`: input `(.., in)`, output `(.., out)`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Builds `weight` `(out, in)` (and `bias` `(out,)` when `bias`) under `vb`, initialised
    /// with `init` for the weight and zeros for the bias.
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        init: Init,
        vb: VarBuilder,
    ) -> Result<Self> {
        let bias_init = bias.then_some(Init::Const(0.0));
        Self::with_inits(in_dim, out_dim, init, bias_init, vb)
    }

    /// PyTorch's default `nn.Linear`: weight and bias both `U(+-1/sqrt(in))` (timm's ResNet
    /// keeps it for its classifier `fc`).
    pub fn pytorch_default(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let init = pytorch_default_init(in_dim);
        Self::with_inits(in_dim, out_dim, init, Some(init), vb)
    }

    /// Builds `weight` `(out, in)` from `weight_init` and, when `bias_init` is given, `bias`
    /// `(out,)` from it.
    pub fn with_inits(
        in_dim: usize,
        out_dim: usize,
        weight_init: Init,
        bias_init: Option<Init>,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", weight_init)?;
        let bias = match bias_init {
            Some(init) => Some(vb.get_with_hints(out_dim, "bias", init)?),
            None => None,
        };
        Ok(Self { weight, bias })
    }

    /// The weight `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
            return match &self.bias {
                Some(b) => ops::linear::linear(x, &self.weight, b),
                None => {
                    let zero = Tensor::zeros(self.weight.dim(0)?, x.dtype(), x.device())?;
                    ops::linear::linear(x, &self.weight, &zero)
                }
            };
        }
        let dims = x.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        // One 2-D gemm instead of a broadcast batched matmul.
        let x2 = x.reshape(((), in_dim))?;
        let mut y = x2.matmul(&self.weight.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank >= 1") = self.weight.dim(0)?;
        y.reshape(out_dims)
    }
}

/// Layer normalisation over the last dim: `(.., C)` -> `(.., C)`, affine, biased variance.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Builds `weight` (ones) and `bias` (zeros), both `(dim,)`.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            return ops::layer_norm::layer_norm(x, &self.weight, &self.bias, self.eps);
        }
        // Composed ops (like candle_nn::ops::layer_norm_slow) so that gradients flow.
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_mul(&(var + self.eps)?.sqrt()?.recip()?)?;
        xn.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// 2-D convolution, square kernel: `(B, Cin, H, W)` -> `(B, Cout, (H + 2p - k) / s + 1, ..)`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// Builds `weight` `(cout, cin, k, k)` with Kaiming-normal fan-out init (timm's ResNet init).
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let std = (2.0 / (cout * k * k) as f64).sqrt();
        let init = Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        Self::with_weight_init(cin, cout, k, stride, padding, bias, init, vb)
    }

    /// Builds `weight` `(cout, cin, k, k)` drawn from `weight_init`; a bias (when asked for) is
    /// PyTorch's default `U(+-1/sqrt(cin k k))`.
    #[allow(clippy::too_many_arguments)]
    pub fn with_weight_init(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        weight_init: Init,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints((cout, cin, k, k), "weight", weight_init)?;
        let bias = if bias {
            Some(vb.get_with_hints(cout, "bias", pytorch_default_init(cin * k * k))?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            stride,
            padding,
        })
    }

    /// `(B, Cin, H, W)` -> `(B, Cout, HW)` for a 1x1 stride-1 conv: one gemm per sample whose
    /// backward is two gemms (candle's conv backward goes through a slow transposed conv).
    pub fn forward_flat_1x1(&self, x: &Tensor) -> Result<Tensor> {
        let (b, cin, h, w) = x.dims4()?;
        let cout = self.weight.dim(0)?;
        let mut y = if im2col_applies(x) {
            conv2d_im2col(x, &self.weight, 1, 0)?.reshape((b, cout, h * w))?
        } else {
            let wm = self.weight.reshape((cout, cin))?;
            wm.broadcast_left(b)?.matmul(&x.reshape((b, cin, h * w))?)?
        };
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(&bias.reshape((1, cout, 1))?)?;
        }
        Ok(y)
    }
}

/// The im2col convolution serves f32/f64 CPU inputs; elsewhere candle's ops.
fn im2col_applies(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, k, _) = self.weight.dims4()?;
        let y = if im2col_applies(x) {
            // candle's CPU conv backward goes through its slow conv_transpose2d.
            conv2d_im2col(x, &self.weight, self.stride, self.padding)?
        } else if k == 1 && self.stride == 1 && self.padding == 0 {
            let (b, _, h, w) = x.dims4()?;
            let cout = self.weight.dim(0)?;
            return self.forward_flat_1x1(x)?.reshape((b, cout, h, w));
        } else {
            x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

/// True for the names of BatchNorm running statistics (kept in the VarMap, never trained).
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}
