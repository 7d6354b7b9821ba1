"""timm-parity fixtures for the `model` crate.

Builds a TINY Hybrid-ViT with timm's own classes (ResNet with stem_type='deep', avg_down=True,
stages 1-3 only, wrapped by timm's HybridEmbed inside timm's VisionTransformer), plus the
projector/predictor heads in plain torch (MoCo-v3 pattern: Linear(bias=False), BatchNorm1d, ReLU;
last BatchNorm1d without affine), with random weights and a random input. Writes, under
crates/model/tests/fixtures/:

  tiny.toml                    the `[model]` table of the tiny model
  tiny_weights.safetensors     timm/torch state dict (encoder names as timm's, + head., projector., predictor.)
  tiny_io.safetensors          images (B,3,H,W); eval_* and train_* outputs: tokens (B,N,C),
                               features (B,C), logits (B,K), proj (B,P), pred (B,P)
  tiny_after_train.safetensors running_mean / running_var of every BatchNorm after ONE
                               train-mode forward from tiny_weights (PyTorch's unbiased update)
  tiny_resnet.safetensors      a plain timm ResNet-D state dict (layer4, fc, num_batches_tracked
                               included) with the tiny trunk's sizes
  tiny_resnet_io.safetensors   images and its eval-mode layer3 output `features` (B, 64, 3, 3)
  tiny_resnet50.toml           the `[model]` table of a tiny `arch = "resnet50"` (four stages)
  tiny_resnet50_weights.safetensors  timm ResNet-D state dict (conv1.*, bn1.*, layer1-4.*, fc.*)
                               + projector., predictor.
  tiny_resnet50_io.safetensors images; eval_* and train_* outputs: tokens (B,N,C3) (the layer3
                               map flattened), features (B,C4) (global average pool of layer4,
                               timm's forward_head(pre_logits=True)), logits (B,K), proj, pred
  tiny_resnet50_after_train.safetensors  running statistics after ONE train-mode forward

Run (from the repository root):
  python -m venv venv && venv/bin/pip install torch==2.15.0 timm==1.0.31 safetensors==0.8.0 numpy
  venv/bin/python crates/model/scripts/make_fixtures.py
Check the `forward` example on configs and inputs that the fixtures do not use (the hybrid, then
`arch = "resnet50"`):
  venv/bin/python crates/model/scripts/make_fixtures.py --check-example
(builds the example with cargo, runs it in eval and train mode, compares with timm).
"""
import argparse
import copy
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from timm.layers import HybridEmbed
from timm.models.resnet import Bottleneck, ResNet
from timm.models.vision_transformer import VisionTransformer

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures")


class Trunk(nn.Module):
    """timm ResNet-D up to stage 3 (what timm's features_only/out_indices=(3,) keeps)."""

    def __init__(self, layers, channels, stem_width):
        super().__init__()
        r = ResNet(Bottleneck, layers=list(layers) + [1], channels=list(channels) + [8],
                   stem_type="deep", stem_width=stem_width, avg_down=True, num_classes=0)
        self.conv1, self.bn1, self.act1, self.maxpool = r.conv1, r.bn1, r.act1, r.maxpool
        self.layer1, self.layer2, self.layer3 = r.layer1, r.layer2, r.layer3

    def forward(self, x):
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


def mlp_head(dims):
    """Linear(no bias)-BN-ReLU ... Linear(no bias)-BN(affine=False), indices as nn.Sequential's."""
    mods = []
    for i in range(len(dims) - 1):
        last = i == len(dims) - 2
        mods.append(nn.Linear(dims[i], dims[i + 1], bias=False))
        mods.append(nn.BatchNorm1d(dims[i + 1], affine=not last))
        if not last:
            mods.append(nn.ReLU(inplace=True))
    return nn.Sequential(*mods)


class Full(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        trunk = Trunk(cfg["trunk_layers"], cfg["trunk_channels"], cfg["stem_width"])
        d = cfg["embed_dim"]
        self.vit = VisionTransformer(
            img_size=cfg["image_size"], patch_size=1, num_classes=cfg["num_classes"],
            embed_dim=d, depth=cfg["depth"], num_heads=cfg["num_heads"], mlp_ratio=cfg["mlp_ratio"],
            qkv_bias=True, embed_layer=lambda **kw: HybridEmbed(backbone=trunk, **kw))
        self.projector = mlp_head([d, cfg["proj_hidden"], cfg["proj_hidden"], cfg["proj_dim"]])
        self.predictor = mlp_head([cfg["proj_dim"], cfg["proj_hidden"], cfg["proj_dim"]])

    def state(self):
        sd = {k: v for k, v in self.vit.state_dict().items() if not k.endswith("num_batches_tracked")}
        for name, m in (("projector", self.projector), ("predictor", self.predictor)):
            for k, v in m.state_dict().items():
                if not k.endswith("num_batches_tracked"):
                    sd[f"{name}.{k}"] = v
        return {k: v.detach().contiguous().clone() for k, v in sd.items()}

    def outputs(self, images):
        tokens = self.vit.patch_embed(images)
        x = self.vit._pos_embed(tokens)
        x = self.vit.norm(self.vit.blocks(x))
        feats = x[:, 0]
        logits = self.vit.head(feats)
        proj = self.projector(feats)
        pred = self.predictor(proj)
        return dict(tokens=tokens, features=feats, logits=logits, proj=proj, pred=pred)


def randomise(model, gen):
    # Random values everywhere (zero-init BNs, 1e-6 cls token etc. would hide mistakes).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bn" in name or "downsample.2" in name or ".norm" in name or name.startswith("vit.norm"):
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / fan_in) ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))


def build(cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Full(cfg)
    randomise(model, gen)
    return model, gen


def toml_of(cfg):
    def val(v):
        if isinstance(v, list):
            return "[" + ", ".join(str(x) for x in v) + "]"
        if isinstance(v, str):
            return f'"{v}"'
        return str(v)
    return "[model]\n" + "".join(f"{k} = {val(v)}\n" for k, v in cfg.items())


TINY = dict(trunk_layers=[2, 1, 2], trunk_channels=[4, 8, 16], stem_width=4, embed_dim=32,
            depth=2, num_heads=4, mlp_ratio=3.0, image_size=40, num_classes=5,
            proj_hidden=16, proj_dim=8)
# Different from TINY in every size: used only by --check-example.
OTHER = dict(trunk_layers=[1, 2, 1], trunk_channels=[8, 4, 8], stem_width=6, embed_dim=24,
             depth=3, num_heads=3, mlp_ratio=2.0, image_size=56, num_classes=3,
             proj_hidden=12, proj_dim=6)


class FullResNet(nn.Module):
    """timm's ResNet-D as `resnet50d` builds it (deep stem, avg-down), four stages, + heads."""

    def __init__(self, cfg):
        super().__init__()
        self.resnet = ResNet(Bottleneck, layers=list(cfg["trunk_layers"]),
                             channels=list(cfg["trunk_channels"]), stem_type="deep",
                             stem_width=cfg["stem_width"], avg_down=True,
                             num_classes=cfg["num_classes"])
        c4 = self.resnet.num_features
        self.projector = mlp_head([c4, cfg["proj_hidden"], cfg["proj_hidden"], cfg["proj_dim"]])
        self.predictor = mlp_head([cfg["proj_dim"], cfg["proj_hidden"], cfg["proj_dim"]])

    def state(self):
        sd = dict(self.resnet.state_dict())
        for name, m in (("projector", self.projector), ("predictor", self.predictor)):
            for k, v in m.state_dict().items():
                sd[f"{name}.{k}"] = v
        return {k: v.detach().contiguous().clone() for k, v in sd.items()
                if not k.endswith("num_batches_tracked")}

    def outputs(self, images):
        r = self.resnet
        x = r.maxpool(r.act1(r.bn1(r.conv1(images))))
        x3 = r.layer3(r.layer2(r.layer1(x)))
        tokens = x3.flatten(2).transpose(1, 2)
        feats = r.forward_head(r.layer4(x3), pre_logits=True)
        # The same features through timm's own forward (no split): a check of the split itself.
        assert torch.equal(feats, r.forward_head(r.forward_features(images), pre_logits=True))
        logits = r.fc(feats)
        proj = self.projector(feats)
        pred = self.predictor(proj)
        return dict(tokens=tokens, features=feats, logits=logits, proj=proj, pred=pred)


def build_resnet(cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = FullResNet(cfg)
    randomise(model, gen)
    return model, gen


# A tiny plain ResNet-50-D: blocks with and without a shortcut conv, every stage.
TINY_RESNET50 = dict(arch="resnet50", trunk_layers=[2, 1, 1, 2], trunk_channels=[4, 8, 8, 16],
                     stem_width=4, image_size=40, num_classes=5, proj_hidden=16, proj_dim=8)
# Different from TINY_RESNET50 in every size: used only by --check-example.
OTHER_RESNET50 = dict(arch="resnet50", trunk_layers=[1, 2, 1, 1], trunk_channels=[6, 4, 8, 4],
                      stem_width=6, image_size=48, num_classes=3, proj_hidden=12, proj_dim=6)


def make_resnet50_fixtures():
    model, gen = build_resnet(TINY_RESNET50, 4321)
    images = torch.randn(6, 3, TINY_RESNET50["image_size"], TINY_RESNET50["image_size"],
                         generator=gen)
    weights = model.state()
    fresh = copy.deepcopy(model)
    io = {"images": images}
    for mode, train in (("eval", False), ("train", True)):
        model.train(train)
        with torch.no_grad():
            for k, v in model.outputs(images).items():
                io[f"{mode}_{k}"] = v.contiguous()
    # outputs() runs the train-mode forward twice (split + timm's own): the statistics after ONE
    # train-mode forward come from an untouched copy, as the Rust test does it.
    fresh.train()
    with torch.no_grad():
        r = fresh.resnet
        f = r.forward_head(r.forward_features(images), pre_logits=True)
        fresh.predictor(fresh.projector(f))
    after = {k: v for k, v in fresh.state().items() if "running_" in k}
    save_file(weights, os.path.join(FIX, "tiny_resnet50_weights.safetensors"))
    save_file(io, os.path.join(FIX, "tiny_resnet50_io.safetensors"))
    save_file(after, os.path.join(FIX, "tiny_resnet50_after_train.safetensors"))
    with open(os.path.join(FIX, "tiny_resnet50.toml"), "w") as f:
        f.write(toml_of(TINY_RESNET50))


def make_fixtures():
    os.makedirs(FIX, exist_ok=True)
    model, gen = build(TINY, 1234)
    images = torch.randn(8, 3, TINY["image_size"], TINY["image_size"], generator=gen)
    weights = model.state()
    io = {"images": images}
    model.eval()
    with torch.no_grad():
        for k, v in model.outputs(images).items():
            io[f"eval_{k}"] = v.contiguous()
    model.train()
    with torch.no_grad():
        for k, v in model.outputs(images).items():
            io[f"train_{k}"] = v.contiguous()
    after = {k: v for k, v in model.state().items() if "running_" in k}
    save_file(weights, os.path.join(FIX, "tiny_weights.safetensors"))
    save_file(io, os.path.join(FIX, "tiny_io.safetensors"))
    save_file(after, os.path.join(FIX, "tiny_after_train.safetensors"))
    with open(os.path.join(FIX, "tiny.toml"), "w") as f:
        f.write(toml_of(TINY))
    # A plain timm ResNet-D (what `resnet50d` is, only smaller), saved as timm saves it.
    torch.manual_seed(77)
    r = ResNet(Bottleneck, layers=TINY["trunk_layers"] + [1], channels=TINY["trunk_channels"] + [8],
               stem_type="deep", stem_width=TINY["stem_width"], avg_down=True, num_classes=10)
    randomise(r, gen)
    r.eval()
    x = torch.randn(2, 3, TINY["image_size"], TINY["image_size"], generator=gen)
    with torch.no_grad():
        f = r.maxpool(r.act1(r.bn1(r.conv1(x))))
        f = r.layer3(r.layer2(r.layer1(f)))
    save_file({k: v.contiguous() for k, v in r.state_dict().items()},
              os.path.join(FIX, "tiny_resnet.safetensors"))
    save_file({"images": x, "features": f.contiguous()}, os.path.join(FIX, "tiny_resnet_io.safetensors"))
    make_resnet50_fixtures()
    print("fixtures written to", os.path.normpath(FIX))


def check_example():
    """Run `cargo run --example forward` on OTHER (encoder-only weights + head) and compare."""
    model, gen = build(OTHER, 99)
    images = torch.randn(2, 3, OTHER["image_size"], OTHER["image_size"], generator=gen)
    # An encoder-only timm state dict (with its classifier head, without projector/predictor).
    sd = {k: v for k, v in model.state().items() if not k.startswith(("projector.", "predictor."))}
    return run_example(OTHER, sd, images, model)


def check_example_resnet50():
    """The same for `arch = "resnet50"`: a plain timm ResNet-D state dict with its `fc`."""
    model, gen = build_resnet(OTHER_RESNET50, 98)
    images = torch.randn(2, 3, OTHER_RESNET50["image_size"], OTHER_RESNET50["image_size"],
                         generator=gen)
    sd = {k: v for k, v in model.state().items() if not k.startswith(("projector.", "predictor."))}
    return run_example(OTHER_RESNET50, sd, images, model)


def run_example(cfg, sd, images, model):
    root = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = os.path.join(tmp, "m.toml")
        with open(cfg_path, "w") as f:
            f.write(toml_of(cfg))
        w_path, x_path = os.path.join(tmp, "w.safetensors"), os.path.join(tmp, "x.safetensors")
        save_file({"module." + k: v for k, v in sd.items()}, w_path)  # prefix gets stripped
        save_file({"images": images}, x_path)
        for train in (False, True):
            y_path = os.path.join(tmp, "y.safetensors")
            cmd = ["cargo", "run", "-q", "-p", "model", "--example", "forward", "--",
                   "--config", cfg_path, "--weights", w_path, "--input", x_path, "--out", y_path]
            if train:
                cmd.append("--train")
            subprocess.run(cmd, check=True, cwd=root)
            got = load_file(y_path)
            model.train(train)
            with torch.no_grad():
                want = model.outputs(images)
            for k in ("tokens", "features", "logits"):
                err = ((got[k] - want[k]).abs().max() / want[k].abs().max()).item()
                worst = max(worst, err)
                print(f"{cfg.get('arch', 'hybrid')} {'train' if train else 'eval '} {k:9s} "
                      f"shape {tuple(got[k].shape)} rel err {err:.2e}")
    print(f"worst relative error {worst:.2e}", "OK" if worst <= 1e-4 else "FAIL")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-example", action="store_true")
    args = ap.parse_args()
    if args.check_example:
        sys.exit(check_example() or check_example_resnet50())
    sys.exit(make_fixtures())
