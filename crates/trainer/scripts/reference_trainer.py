#!/usr/bin/env python3
"""PyTorch/timm reference trainer for the four methods of `trainer` (ce, ce-resample, paco, spmix).

The network is timm's own (ResNet-D trunk with `stem_type='deep', avg_down=True` inside timm's
HybridEmbed inside timm's VisionTransformer, as crates/model/scripts/make_fixtures.py builds it;
MoCo-v3 projector/predictor), the optimiser `torch.optim.AdamW`, the loss the PaCo/GPaCo formula
(docs in crates/supcon). Each method's step, in the order the Rust trainer takes it:

  ce, ce-resample  logits = head(f(x)) on the loader's one batch, mean cross-entropy.
  paco             q = l2norm(predictor(projector(f(x_q)))), logits = head(f(x_q)); EMA update of
                   the key network (k <- m k + (1-m) q, trainable variables only), then
                   k = l2norm(projector_k(f_k(x_k))) (train mode, no gradient); PaCo over
                   [q; k; queue] with the centre logits + log prior.
  spmix            foreground = class-balanced batch (or the instance batch), background = the
                   other, label = the foreground's; tokens E(fg) and E(bg) (two train-mode
                   passes, foreground first) mixed r*E(fg) + (1-r)*E(bg) with the step's ratio
                   (B, N); the same for the key views through the EMA key network with their own
                   ratio; PaCo as above.
  then             backward, global gradient norm, AdamW at the step's learning rate (decay on
                   weights of rank >= 2 except cls_token/pos_embed), enqueue k and its labels.

Learning rate: linear warm-up over `warmup_epochs * steps_per_epoch` steps (step t gets
lr (t+1)/W), then cosine to `min_lr` over the rest of `epochs * steps_per_epoch`.

Mode `steps` replays the inputs that `cargo run -p trainer --example step_trace` wrote
(initial weights, every step's augmented batches, labels and SPMix ratios) and writes the
reference trace and final weights that crates/trainer/tests/step_parity.rs compares against:

  python -m venv venv && venv/bin/pip install torch==2.15.0 timm==1.0.31 safetensors==0.8.0 numpy==2.4.6
  for m in ce ce-resample paco spmix; do
    cargo run -p trainer --example step_trace -- \\
      --config crates/trainer/tests/fixtures/step_parity/config.toml --set method.name=$m \\
      --steps 20 --out /tmp/trace-$m --data /tmp/trace-data
    venv/bin/python crates/trainer/scripts/reference_trainer.py steps --trace /tmp/trace-$m \\
      --out crates/trainer/tests/fixtures/step_parity
  done

(`scripts/step-parity-fixtures.sh` runs exactly this.) Deliberate choices of the project that the
script follows, stated: the PaCo prior is the one the Rust config resolved (`loss.prior`,
default "anchors": the class-balanced sampler's distribution for the balanced foreground), read
from the trace; the queue starts with per-row normalised random keys labelled "unlabelled" (never a
positive), read from the initial state.
"""
import argparse
import glob
import json
import math
import os
import sys
import tomllib

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "model", "scripts"))
from make_fixtures import Full  # noqa: E402  (timm's hybrid + heads, under timm's names)

UNLABELLED = -1  # the Rust queue's u32::MAX: never equals a class
# Weights compared after the last step (a spread over the network, heads and state).
SELECTED = [
    "query.patch_embed.backbone.conv1.0.weight",
    "query.patch_embed.backbone.layer1.0.bn3.weight",
    "query.patch_embed.backbone.layer3.0.conv3.weight",
    "query.patch_embed.backbone.bn1.running_mean",
    "query.patch_embed.backbone.layer2.0.bn2.running_var",
    "query.patch_embed.proj.weight",
    "query.cls_token",
    "query.pos_embed",
    "query.blocks.0.attn.qkv.weight",
    "query.blocks.1.mlp.fc2.weight",
    "query.norm.weight",
    "query.head.weight",
    "query.head.bias",
]
SELECTED_CONTRASTIVE = [
    "query.projector.0.weight",
    "query.predictor.3.weight",
    "key.patch_embed.proj.weight",
    "key.projector.7.running_mean",
    "queue.keys",
]


# ----------------------------------------------------------------------------------- the network
def model_config(cfg):
    return {k: cfg["model"][k] for k in (
        "trunk_layers", "trunk_channels", "stem_width", "embed_dim", "depth", "num_heads",
        "mlp_ratio", "image_size", "num_classes", "proj_hidden", "proj_dim")}


def load_into(net, tensors, prefix):
    """Loads `prefix`-named tensors (Full.state() names) into net; returns how many."""
    own = {}
    for name, t in net.vit.state_dict().items():
        own[name] = t
    for head in ("projector", "predictor"):
        for name, t in getattr(net, head).state_dict().items():
            own[f"{head}.{name}"] = t
    n = 0
    with torch.no_grad():
        for name, t in own.items():
            key = prefix + name
            if key in tensors:
                t.copy_(tensors[key].to(t.dtype))
                n += 1
            elif not name.endswith("num_batches_tracked") and prefix == "query.":
                raise KeyError(f"{key} missing from the initial state")
    return n


def state_of(net, prefix):
    return {prefix + k: v.detach().clone() for k, v in net.state().items()}


def embed(net, x):
    """Tokens (B, N, C) of images (B, 3, S, S): trunk + 1x1 projection, flattened."""
    return net.vit.patch_embed(x)


def encode(net, tokens):
    """cls feature (B, C) of tokens: cls token + position embedding, blocks, final norm."""
    x = net.vit._pos_embed(tokens)
    x = net.vit.norm(net.vit.blocks(x))
    return x[:, 0]


def l2norm(x):
    return x / (x.pow(2).sum(-1, keepdim=True).sqrt() + 1e-12)


# -------------------------------------------------------------------------------------- the loss
def paco_loss(features, labels, sup_logits, log_prior, alpha, beta, gamma, temperature):
    """GPaCo/PaCo (crates/supcon): anchors are the first N = rows(sup_logits) rows of features."""
    n, num_classes = sup_logits.shape
    labels = labels.view(-1, 1)
    mask = torch.eq(labels[:n], labels.T).float()
    sim = features[:n] @ features.T / temperature
    logits = torch.cat((sup_logits + log_prior, sim), dim=1)
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    self_mask = torch.ones_like(mask).scatter(1, torch.arange(n).view(-1, 1), 0)
    mask = mask * self_mask
    one_hot = F.one_hot(labels[:n].view(-1), num_classes=num_classes).float()
    weights = torch.cat((one_hot * beta, mask * alpha), dim=1)
    denom = torch.cat((torch.ones(n, num_classes), gamma * self_mask), dim=1)
    log_prob = logits - torch.log((torch.exp(logits) * denom).sum(1, keepdim=True) + 1e-12)
    wsum = weights.sum(1)
    wsum = torch.where(wsum < 1e-6, torch.ones_like(wsum), wsum)
    return -((weights * log_prob).sum(1) / wsum).mean()


# ---------------------------------------------------------------------------------- the schedule
def lr_at(t, base, min_lr, warmup, total):
    if t < warmup:
        return base * (t + 1) / warmup
    span = max(total - warmup, 1)
    progress = min((t - warmup) / span, 1.0)
    return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def decays(name, p):
    return p.dim() >= 2 and "cls_token" not in name and "pos_embed" not in name


def named_trainables(net):
    out = [(n, p) for n, p in net.vit.named_parameters()]
    for head in ("projector", "predictor"):
        out += [(f"{head}.{n}", p) for n, p in getattr(net, head).named_parameters()]
    return out


def make_optimizer(net, optim):
    params = named_trainables(net)
    groups = [
        {"params": [p for n, p in params if decays(n, p)], "weight_decay": optim["weight_decay"]},
        {"params": [p for n, p in params if not decays(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=optim["lr"], betas=(optim["beta1"], optim["beta2"]),
                             eps=optim["eps"])


@torch.no_grad()
def ema_update(key, query, m):
    q = dict(named_trainables(query))
    for name, p in named_trainables(key):
        if name.startswith("predictor."):
            continue
        p.mul_(m).add_(q[name], alpha=1 - m)


class Queue:
    """Ring buffer of keys (K, D) and labels (K,), as crates/supcon's LabelledQueue."""

    def __init__(self, keys, labels, ptr):
        self.keys, self.labels, self.ptr = keys.clone(), labels.clone(), int(ptr)

    def enqueue(self, k, y):
        for i in range(k.shape[0]):
            self.keys[self.ptr] = k[i]
            self.labels[self.ptr] = y[i]
            self.ptr = (self.ptr + 1) % self.keys.shape[0]


# -------------------------------------------------------------------------------- one method step
def method_step(cfg, query, key, queue, batch, log_prior):
    """Loss, logits, labels and the keys to enqueue of one step (the order the Rust trainer uses)."""
    method = cfg["method"]["name"]
    loss_cfg = cfg["loss"]
    paco = lambda f, y, z: paco_loss(f, y, z, log_prior, loss_cfg["alpha"], loss_cfg["beta"],  # noqa: E731
                                     loss_cfg["gamma"], loss_cfg["temperature"])
    if method in ("ce", "ce-resample"):
        x, y = batch["b0.v0.images"], batch["b0.labels"]
        logits = query.vit.head(encode(query, embed(query, x)))
        return F.cross_entropy(logits, y), None
    ema = cfg["method"]["key_network"] == "ema"
    if not ema:
        raise NotImplementedError("the shared key network is not traced")
    if method == "paco":
        xq, xk, y = batch["b0.v0.images"], batch["b0.v1.images"], batch["b0.labels"]
        fq = encode(query, embed(query, xq))
        q = l2norm(query.predictor(query.projector(fq)))
        logits = query.vit.head(fq)
        ema_update(key, query, cfg["method"]["momentum"])
        with torch.no_grad():
            k = l2norm(key.projector(encode(key, embed(key, xk))))
    elif method == "spmix":
        fg, bg = ("b1", "b0") if cfg["mix"]["foreground"] == "balanced" else ("b0", "b1")
        y = batch[f"{fg}.labels"]
        rq, rk = batch["ratio.query"].unsqueeze(-1), batch["ratio.key"].unsqueeze(-1)
        tq = rq * embed(query, batch[f"{fg}.v0.images"]) + (1 - rq) * embed(query, batch[f"{bg}.v0.images"])
        fq = encode(query, tq)
        q = l2norm(query.predictor(query.projector(fq)))
        logits = query.vit.head(fq)
        ema_update(key, query, cfg["method"]["momentum"])
        with torch.no_grad():
            tk = rk * embed(key, batch[f"{fg}.v1.images"]) + (1 - rk) * embed(key, batch[f"{bg}.v1.images"])
            k = l2norm(key.projector(encode(key, tk)))
    else:
        raise ValueError(f"unknown method {method}")
    feats = torch.cat([q, k, queue.keys])
    labels = torch.cat([y, y, queue.labels])
    return paco(feats, labels, logits), (k.detach(), y)


def grad_norm(net):
    total = 0.0
    for _, p in named_trainables(net):
        if p.grad is not None:
            total += float(p.grad.double().pow(2).sum())
    return math.sqrt(total)


def checksums(batch):
    image_sum = sum(float(v.double().sum()) for k, v in batch.items() if k.endswith(".images"))
    image_abs = sum(float(v.double().abs().sum()) for k, v in batch.items() if k.endswith(".images"))
    label_sum = sum(int(v.sum()) for k, v in batch.items() if k.endswith(".labels"))
    ratio_sum = sum(float(v.double().sum()) for k, v in batch.items() if k.startswith("ratio."))
    return dict(image_sum=image_sum, image_abs_sum=image_abs, label_sum=label_sum, ratio_sum=ratio_sum)


def read_batch(path):
    batch = load_file(path)
    for k in list(batch):
        if k.endswith(".labels") or k.endswith(".indices"):
            batch[k] = batch[k].to(torch.int64)
        else:
            batch[k] = batch[k].to(torch.get_default_dtype())
    return batch


# ------------------------------------------------------------------------------------ mode steps
def replay(trace_dir, out_dir, dtype):
    runs = glob.glob(os.path.join(trace_dir, "runs", "*", "config.toml"))
    if len(runs) != 1:
        raise SystemExit(f"expected one run folder with config.toml under {trace_dir}/runs, found {runs}")
    with open(runs[0], "rb") as f:
        cfg = tomllib.load(f)
    with open(os.path.join(trace_dir, "trace.json")) as f:
        rust = json.load(f)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    # float64: the exact computation on the float32 inputs. PyTorch's own float32 CPU kernels
    # drift from it by ~4e-3 in the gradient norm within 20 steps (the Rust float32 side stays
    # within ~1e-6 of it), so float32 would make the reference the noisier side.
    torch.set_default_dtype(dtype)
    init = {k: (v.to(dtype) if v.is_floating_point() else v)
            for k, v in load_file(os.path.join(trace_dir, "init.safetensors")).items()}
    mcfg = model_config(cfg)
    query = Full(mcfg)
    load_into(query, init, "query.")
    query.train()
    method = cfg["method"]["name"]
    contrastive = method in ("paco", "spmix")
    key, queue = None, None
    if contrastive:
        key = Full(mcfg)
        load_into(key, init, "key.")
        key.train()
        for p in key.parameters():
            p.requires_grad_(False)
        labels = init["queue.labels"].to(torch.int64)
        labels[labels == 4294967295] = UNLABELLED
        queue = Queue(init["queue.keys"], labels, init["queue.ptr"].item())
    log_prior = torch.tensor(rust["log_prior"], dtype=dtype).view(1, -1) if contrastive else None
    optim = cfg["optim"]
    opt = make_optimizer(query, optim)
    spe = rust["steps_per_epoch"]
    warmup, total = optim["warmup_epochs"] * spe, cfg["run"]["epochs"] * spe
    rows = []
    for rrow in rust["rows"]:
        t = rrow["global_step"]
        batch = read_batch(os.path.join(trace_dir, "steps", f"step-{t:04d}.safetensors"))
        lr = lr_at(t, optim["lr"], optim["min_lr"], warmup, total)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss, enq = method_step(cfg, query, key, queue, batch, log_prior)
        loss.backward()
        norm = grad_norm(query)
        opt.step()
        if enq is not None:
            queue.enqueue(*enq)
        rows.append(dict(global_step=t, epoch=rrow["epoch"], step=rrow["step"], lr=lr,
                         loss=float(loss.detach()), grad_norm=norm, inputs=checksums(batch)))
    final = state_of(query, "query.")
    if contrastive:
        final.update(state_of(key, "key."))
        final["queue.keys"] = queue.keys
    names = SELECTED + (SELECTED_CONTRASTIVE if contrastive else [])
    os.makedirs(out_dir, exist_ok=True)
    save_file({n: final[n].to(torch.float32).contiguous() for n in names},
              os.path.join(out_dir, f"{method}.final.safetensors"))
    trace = dict(producer="pytorch", method=method, steps_per_epoch=spe,
                 log_prior=rust["log_prior"], rows=rows)
    with open(os.path.join(out_dir, f"{method}.trace.json"), "w") as f:
        json.dump(trace, f, indent=1)
        f.write("\n")
    worst = max(abs(a["loss"] - b["loss"]) / max(abs(b["loss"]), 1e-12) for a, b in zip(rust["rows"], rows))
    print(f"{method}: {len(rows)} steps replayed; worst relative loss difference to the Rust trace {worst:.2e}")


# ------------------------------------------------------------------------------------ mode train
# The learning-parity benchmark: the same recipe as a `trainer train` config, trained from timm's
# own initial weights through a torchvision pipeline of its own (nothing shared with the Rust
# side but the prepared split: CSVs, images, saliency maps).
CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
GROUPS = {"many": ["NV"], "medium": ["MEL", "BKL", "BCC"], "few": ["AKIEC", "VASC", "DF"]}
ISIC_MEAN, ISIC_STD = (0.765, 0.545, 0.569), (0.140, 0.151, 0.169)
SAL_MEAN, SAL_STD = 0.144, 0.137


def read_split(split_dir, name):
    import csv
    rows = []
    with open(os.path.join(split_dir, f"{name}.csv"), newline="") as f:
        for r in csv.DictReader(f):
            path = r["path"] if os.path.isabs(r["path"]) else os.path.join(split_dir, r["path"])
            rows.append((r["image"], path, int(r["label"])))
    return rows


class Views:
    """The trainer's views (crates/dataset presets, `rand_augment = false`): geometric steps on
    image and saliency map together, colour steps on the image only."""

    def __init__(self, size, crop_scale, eval_resize):
        from torchvision.transforms import v2 as T
        self.T, self.size, self.scale, self.eval_resize = T, size, tuple(crop_scale), eval_resize
        self.jitter = T.ColorJitter(0.4, 0.4, 0.4, 0.0)

    def _crop(self, img, sal):
        import torchvision.transforms.v2.functional as TF
        i, j, h, w = self.T.RandomResizedCrop.get_params(img, self.scale, (3 / 4, 4 / 3))
        img = TF.resized_crop(img, i, j, h, w, [self.size, self.size], antialias=True)
        sal = TF.resized_crop(sal, i, j, h, w, [self.size, self.size], antialias=True)
        return img, sal

    def _flip(self, img, sal):
        import torchvision.transforms.v2.functional as TF
        if torch.rand(()) < 0.5:
            return TF.horizontal_flip(img), TF.horizontal_flip(sal)
        return img, sal

    def query(self, img, sal):
        img, sal = self._crop(img, sal)
        img, sal = self._flip(img, sal)
        return self.jitter(img), sal

    def key(self, img, sal):
        import torchvision.transforms.v2.functional as TF
        img, sal = self._crop(img, sal)
        img = self.jitter(img)
        if torch.rand(()) < 0.2:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        run, sigma = bool(torch.rand(()) < 0.5), float(torch.empty(()).uniform_(0.1, 2.0))
        if run:
            k = 2 * math.ceil(3 * sigma) + 1
            img = TF.gaussian_blur(img, [k, k], [sigma, sigma])
        return self._flip(img, sal)

    def eval(self, img):
        import torchvision.transforms.v2.functional as TF
        img = TF.resize(img, self.eval_resize, antialias=True)
        return TF.center_crop(img, [self.size, self.size])


def normalise(img, sal=None):
    x = (img.float() / 255 - torch.tensor(ISIC_MEAN).view(3, 1, 1)) / torch.tensor(ISIC_STD).view(3, 1, 1)
    if sal is None:
        return x
    return x, (sal.float() / 255 - SAL_MEAN) / SAL_STD


class Images:
    """Decoded images and saliency maps of a split, kept in memory as uint8 tensors."""

    def __init__(self, split_dir, rows, with_saliency):
        from torchvision.io import decode_image, ImageReadMode
        self.rows = rows
        self.images = [decode_image(p, mode=ImageReadMode.RGB) for _, p, _ in rows]
        self.saliency = [decode_image(os.path.join(split_dir, "saliency", f"{i}.png"), mode=ImageReadMode.GRAY)
                         for i, _, _ in rows] if with_saliency else None
        self.labels = torch.tensor([y for _, _, y in rows])

    def views(self, idx, views, kinds):
        """(images per view, saliency per view) for indices idx; kinds: ("query", "key") etc."""
        imgs = {k: [] for k in kinds}
        sals = {k: [] for k in kinds}
        for i in idx:
            sal = self.saliency[i] if self.saliency is not None else torch.zeros_like(self.images[i][:1])
            for k in kinds:
                a, b = getattr(views, k)(self.images[i], sal)
                a, b = normalise(a, b)
                imgs[k].append(a)
                sals[k].append(b)
        return {k: torch.stack(imgs[k]) for k in kinds}, {k: torch.stack(sals[k]) for k in kinds}


def lesion_aware_ratio(sal_fg, sal_bg, patch, noise, floor, alpha):
    """(B, N) foreground share per token (crates/patchmix, ratio.rs): patch means of saliency +
    uniform noise, per-sample min-max to [0, 1], mapped to [floor, 1]; min(alpha, max(fg, bg))."""
    def score(s):
        s = s + noise * (2 * torch.rand_like(s) - 1)
        s = F.avg_pool2d(s, patch).flatten(1)
        lo, hi = s.min(1, keepdim=True).values, s.max(1, keepdim=True).values
        s = torch.where(hi > lo, (s - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(s))
        return floor + (1 - floor) * s
    return torch.maximum(score(sal_fg), score(sal_bg)).clamp(max=alpha)


def prior_of(cfg, counts):
    """The PaCo logit adjustment's class distribution, as the Rust config resolves `loss.prior`."""
    counts = torch.tensor(counts, dtype=torch.float64)
    rule = cfg["loss"].get("prior", "anchors")
    balanced = cfg["method"]["name"] == "spmix" and cfg["mix"]["foreground"] == "balanced"
    if rule == "uniform":
        p = torch.ones_like(counts)
    elif rule == "anchors" and balanced:
        p = counts.pow(1 - cfg["method"]["class_weight_exponent"])
    else:
        p = counts
    return p / p.sum()


def evaluate(net, data, views, batch=128):
    net.eval()
    preds = []
    with torch.no_grad():
        for s in range(0, len(data.images), batch):
            x = torch.stack([normalise(views.eval(img)) for img in data.images[s:s + batch]])
            preds.append(net.vit.head(encode(net, embed(net, x))).argmax(1))
    net.train()
    return metrics(data.labels, torch.cat(preds))


def metrics(labels, preds):
    acc = {}
    for c, name in enumerate(CLASSES):
        m = labels == c
        acc[name] = float((preds[m] == c).float().mean()) if m.any() else float("nan")
    out = {g: 100 * sum(acc[c] for c in cs) / len(cs) for g, cs in GROUPS.items()}
    out["total"] = 100 * float((preds == labels).float().mean())
    f1 = []
    for c in range(len(CLASSES)):
        tp = float(((preds == c) & (labels == c)).sum())
        fp = float(((preds == c) & (labels != c)).sum())
        fn = float(((preds != c) & (labels == c)).sum())
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    out["macro_f1"] = 100 * sum(f1) / len(f1)
    return out


def train(cfg_path, split_dir, seed, out_path, threads, method=None, init=None):
    import copy
    with open(cfg_path, "rb") as f:
        cfg = tomllib.load(f)
    if method:
        cfg["method"]["name"] = method
    defaults = dict(beta1=0.9, beta2=0.999, eps=1e-8, min_lr=0.0, grad_clip=0.0)
    optim = {**defaults, **cfg["optim"]}
    cfg["method"].setdefault("class_weight_exponent", 1.0)
    cfg["method"].setdefault("key_network", "ema")
    loss_cfg = {**dict(alpha=0.05, beta=1.0, gamma=1.0), **cfg.get("loss", {})}
    cfg["loss"] = loss_cfg
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    method = cfg["method"]["name"]
    size, bs, epochs = cfg["model"]["image_size"], cfg["run"]["batch_size"], cfg["run"]["epochs"]
    views = Views(size, cfg.get("augment", {}).get("crop_scale", [0.08, 1.0]),
                  round(size * cfg.get("data", {}).get("eval_resize_ratio", 256 / 224)))
    contrastive = method in ("paco", "spmix")
    train_set = Images(split_dir, read_split(split_dir, "train"), method == "spmix")
    val_set = Images(split_dir, read_split(split_dir, "val"), False)
    test_set = Images(split_dir, read_split(split_dir, "test"), False)
    counts = [int((train_set.labels == c).sum()) for c in range(len(CLASSES))]
    n = len(train_set.labels)
    spe = n // bs
    w = cfg["method"]["class_weight_exponent"]
    sample_weights = torch.tensor([counts[y] ** -w for y in train_set.labels.tolist()], dtype=torch.float64)

    query = Full(model_config(cfg))  # timm's own initial weights (seeded above)
    if init:  # or the Rust trainer's (an `init.safetensors` of the step_trace example)
        load_into(query, load_file(init), "query.")
    query.train()
    key = queue = log_prior = None
    if contrastive:
        key = copy.deepcopy(query)
        for p in key.parameters():
            p.requires_grad_(False)
        k = F.normalize(torch.randn(loss_cfg["queue_size"], cfg["model"]["proj_dim"]), dim=1)
        queue = Queue(k, torch.full((loss_cfg["queue_size"],), UNLABELLED, dtype=torch.int64), 0)
        log_prior = torch.log(prior_of(cfg, counts).float() + 1e-9).view(1, -1)
    opt = make_optimizer(query, optim)
    warmup, total = optim["warmup_epochs"] * spe, epochs * spe
    best, best_state, history, t = -1.0, None, [], 0
    for epoch in range(epochs):
        order = torch.randperm(n)
        seen = correct = 0
        for step in range(spe):
            inst = order[step * bs:(step + 1) * bs].tolist()
            bal = torch.multinomial(sample_weights, bs, replacement=True).tolist()
            for g in opt.param_groups:
                g["lr"] = lr_at(t, optim["lr"], optim["min_lr"], warmup, total)
            batch = {}
            if method == "ce":
                im, _ = train_set.views(inst, views, ("query",))
                batch = {"b0.v0.images": im["query"], "b0.labels": train_set.labels[inst]}
            elif method == "ce-resample":
                im, _ = train_set.views(bal, views, ("query",))
                batch = {"b0.v0.images": im["query"], "b0.labels": train_set.labels[bal]}
            else:
                for b, idx in (("b0", inst), ("b1", bal)):
                    if method == "paco" and b == "b1":
                        continue
                    im, sal = train_set.views(idx, views, ("query", "key"))
                    batch.update({f"{b}.v0.images": im["query"], f"{b}.v1.images": im["key"],
                                  f"{b}.v0.sal": sal["query"], f"{b}.v1.sal": sal["key"],
                                  f"{b}.labels": train_set.labels[idx]})
                if method == "spmix":
                    fg, bg = ("b1", "b0") if cfg["mix"]["foreground"] == "balanced" else ("b0", "b1")
                    mix = cfg["mix"]
                    for v, name in ((0, "query"), (1, "key")):
                        batch[f"ratio.{name}"] = lesion_aware_ratio(
                            batch[f"{fg}.v{v}.sal"], batch[f"{bg}.v{v}.sal"], mix["patch_size"],
                            mix["noise"], mix["floor"], mix["alpha"])
            opt.zero_grad(set_to_none=True)
            loss, enq = method_step(cfg, query, key, queue, batch, log_prior)
            loss.backward()
            if optim["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_([p for _, p in named_trainables(query)], optim["grad_clip"])
            opt.step()
            if enq is not None:
                queue.enqueue(*enq)
            t += 1
        val = evaluate(query, val_set, views)
        history.append(dict(epoch=epoch + 1, val=val))
        print(f"epoch {epoch + 1}/{epochs}: val total {val['total']:.1f}", flush=True)
        if val["total"] > best:
            best, best_state = val["total"], copy.deepcopy(query.state_dict())
    last = evaluate(query, test_set, views)
    query.load_state_dict(best_state)
    result = dict(method=method, seed=seed, test_best=evaluate(query, test_set, views), test_last=last,
                  best_val=best, history=history)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result["test_best"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("steps", help="replay a step_trace folder, write the reference trace")
    s.add_argument("--trace", required=True, help="folder written by the step_trace example")
    s.add_argument("--out", required=True, help="fixture folder for METHOD.trace.json / .final.safetensors")
    s.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="precision of the replay (float64: the exact reference)")
    r = sub.add_parser("train", help="train a config from timm's initial weights (learning parity)")
    r.add_argument("--config", required=True, help="the `trainer train` config (TOML)")
    r.add_argument("--split", required=True, help="the prepared split folder (CSVs, saliency/)")
    r.add_argument("--method", help="override [method] name (ce, ce-resample, paco, spmix)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True, help="result JSON")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--init", help="start from these weights (query.* names) instead of timm's init")
    args = ap.parse_args()
    if args.mode == "train":
        train(args.config, args.split, args.seed, args.out, args.threads, args.method, args.init)
    elif args.mode == "steps":
        torch.set_num_threads(1)
        replay(args.trace, args.out, getattr(torch, args.dtype))


if __name__ == "__main__":
    main()
