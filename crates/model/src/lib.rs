//! candle Hybrid-ViT (ResNet-50-D trunk + ViT) and plain ResNet-50-D backbones, projection heads
//! and momentum key network, numerically the same networks as timm's (parity-tested against timm
//! fixtures).
//!
//! The [`Encoder`] (either backbone, `model.arch`) exposes the seam SPMix mixes at:
//! [`Encoder::embed_t`] turns images `(B, 3, S, S)` into tokens `(B, N, C)`,
//! [`Encoder::encode_t`] turns (mixed) tokens into features `(B, F)`. Variable names equal
//! timm's, so timm state dicts saved as safetensors load as they are; a plain timm `resnet50d`
//! state dict loads into the hybrid's trunk, or whole into the `resnet50` arch.
//!
//! ```no_run
//! use candle_core::{Device, Tensor};
//! let cfg = model::ModelConfig::from_toml_file("configs/spmix.toml")?;
//! let net = model::QueryNetwork::new(&cfg, &Device::Cpu)?;
//! net.load_resnet_trunk("resnet50d.safetensors")?;
//! let images = Tensor::zeros((2, 3, 224, 224), candle_core::DType::F32, &Device::Cpu)?;
//! let tokens = net.encoder().embed_t(&images, true)?; // (2, 196, 768)
//! let features = net.encoder().encode_t(&tokens, true)?; // (2, 768)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod encoder;
pub mod error;
pub mod heads;
pub mod init;
pub mod layers;
pub mod loading;
pub mod momentum;
pub mod network;
pub mod resnet;
pub mod resnet50;
pub mod vit;

pub use config::{Arch, ModelConfig};
pub use encoder::Encoder;
pub use error::{ModelError, Result};
pub use heads::MlpHead;
pub use init::InitLaws;
pub use loading::{LoadOptions, LoadReport};
pub use momentum::MomentumKeyNetwork;
pub use network::QueryNetwork;
pub use resnet::ResNetTrunk;
pub use resnet50::ResNet50;
pub use vit::HybridVit;
