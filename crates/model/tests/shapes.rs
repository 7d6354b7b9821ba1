//! Full-size model shapes without fixtures: 224 -> 14x14x1024 -> 197x768 (B = 1, eval).

use candle_core::{DType, Device, ModuleT, Tensor};
use model::{ModelConfig, QueryNetwork};

#[test]
fn full_model_shapes() {
    let cfg = ModelConfig::full();
    assert_eq!(cfg.num_patches(), 196);
    let net = QueryNetwork::new(&cfg, &Device::Cpu).unwrap();
    let images = Tensor::randn(0f32, 1., (1, 3, 224, 224), &Device::Cpu).unwrap();
    let trunk = net.encoder().trunk().forward_t(&images, false).unwrap();
    assert_eq!(trunk.dims(), &[1, 1024, 14, 14]);
    let tokens = net.encoder().embed_t(&images, false).unwrap();
    assert_eq!(tokens.dims(), &[1, 196, 768]);
    let features = net.encoder().encode_t(&tokens, false).unwrap();
    assert_eq!(features.dims(), &[1, 768]);
    assert_eq!(net.classify(&features).unwrap().dims(), &[1, 7]);
    let p = net.projector().forward_t(&features, false).unwrap();
    assert_eq!(p.dims(), &[1, 256]);
    assert_eq!(
        net.predictor().forward_t(&p, false).unwrap().dims(),
        &[1, 256]
    );
    // Every variable a timm resnet50d-trunk ViT has, with timm's shapes.
    let t = net.tensors().unwrap();
    assert_eq!(t["pos_embed"].dims(), &[1, 197, 768]);
    assert_eq!(t["patch_embed.proj.weight"].dims(), &[768, 1024, 1, 1]);
    assert_eq!(
        t["patch_embed.backbone.conv1.6.weight"].dims(),
        &[64, 32, 3, 3]
    );
    assert_eq!(
        t["patch_embed.backbone.layer3.5.conv3.weight"].dims(),
        &[1024, 256, 1, 1]
    );
    assert_eq!(t["blocks.7.mlp.fc1.weight"].dims(), &[2304, 768]);
    assert_eq!(t["projector.6.weight"].dims(), &[256, 4096]);
    assert!(
        !t.contains_key("projector.7.weight"),
        "last projector BN has no affine"
    );
    assert!(t.values().all(|v| v.dtype() == DType::F32));
}
