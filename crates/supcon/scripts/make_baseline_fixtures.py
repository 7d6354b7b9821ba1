#!/usr/bin/env python3
"""Parity fixtures for the Table 1 baselines' losses in crates/supcon: BCL and MiSLAS, in PyTorch
(float64), with their gradients.

Run from the repository root (same environment as make_fixtures.py):
    venv/bin/python crates/supcon/scripts/make_baseline_fixtures.py
Writes crates/supcon/tests/fixtures/{bcl,label_aware_smoothing}.safetensors. Deterministic.

Formulations, rewritten from the authors' published code (only the device handling is dropped and
the dtype follows the inputs):
- `bal_scl_ref`: BCL's `BalSCL.forward(centers1, features, targets)`,
  FlamieZhu/Balanced-Contrastive-Learning, loss/contrastive.py (commit f72d070): V = 2 views,
  class prototypes as extra contrast columns, per-column division by the class's count in the batch
  plus prototypes (minus 1 for the anchor's own class).
- `logit_adjust_ref`: the same repository's loss/logitadjust.py `LogitAdjust` (tau = 1):
  `F.cross_entropy(x + tau * log(n_c / sum n), target)`.
- `bcl_ref`: main.py's `loss = alpha * ce_loss + beta * scl_loss` (alpha 1.0, beta 0.35, temp 0.07).
- `las_ref`: MiSLAS's `LabelAwareSmoothing` (dvlab-research/MiSLAS, methods.py, commit 0fc381e),
  shapes concave / linear / convex / exp(power).

Inputs are generated in float32 (what the Rust tests feed); the references run in float64 on exactly
those values. Keys: `{case}.{name}`, labels int64, `{case}.params` float64:
- bcl: [ce_weight (alpha), scl_weight (beta), temperature, tau]; tensors features (B, 2, D),
  prototypes (C, D), logits (B, C), labels (B,), counts (C,), loss / ce / scl (1,),
  grad_features, grad_prototypes, grad_logits (of the total).
- label_aware_smoothing: [smooth_head, smooth_tail, shape (0 concave, 1 linear, 2 convex, 3 exp),
  power]; tensors logits (N, C), labels (N,), counts (C,), epsilons (C,), loss (1,), grad_logits.
"""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def unit_rows(x):
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return x.astype(np.float32)


def long_tail_labels(rng, n, counts):
    p = np.asarray(counts, dtype=np.float64)
    return rng.choice(len(counts), size=n, p=p / p.sum()).astype(np.int64)


# -------------------------------------------------------------------------------------------- BCL
def bal_scl_ref(centers1, features, targets, num_classes, temperature):
    # loss/contrastive.py BalSCL.forward, with len(self.cls_num_list) = num_classes.
    dtype = features.dtype
    batch_size = features.shape[0]
    targets = targets.contiguous().view(-1, 1)
    targets_centers = torch.arange(num_classes).view(-1, 1)
    targets = torch.cat([targets.repeat(2, 1), targets_centers], dim=0)
    batch_cls_count = torch.eye(num_classes, dtype=dtype)[targets].sum(dim=0).squeeze()

    mask = torch.eq(targets[:2 * batch_size], targets.T).to(dtype)
    logits_mask = torch.scatter(
        torch.ones_like(mask), 1, torch.arange(batch_size * 2).view(-1, 1), 0)
    mask = mask * logits_mask

    # class-complement
    features = torch.cat(torch.unbind(features, dim=1), dim=0)
    features = torch.cat([features, centers1], dim=0)
    logits = features[:2 * batch_size].mm(features.T)
    logits = torch.div(logits, temperature)

    # For numerical stability
    logits_max, _ = torch.max(logits, dim=1, keepdim=True)
    logits = logits - logits_max.detach()

    # class-averaging
    exp_logits = torch.exp(logits) * logits_mask
    per_ins_weight = torch.tensor(
        [batch_cls_count[i] for i in targets], dtype=dtype).view(1, -1).expand(
        2 * batch_size, 2 * batch_size + num_classes) - mask
    exp_logits_sum = exp_logits.div(per_ins_weight).sum(dim=1, keepdim=True)

    log_prob = logits - torch.log(exp_logits_sum)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)

    loss = - mean_log_prob_pos
    loss = loss.view(2, batch_size).mean()
    return loss


def logit_adjust_ref(x, target, counts, tau):
    # loss/logitadjust.py LogitAdjust.forward (no class weights).
    cls_num_list = counts.to(x.dtype)
    cls_p_list = cls_num_list / cls_num_list.sum()
    m_list = (tau * torch.log(cls_p_list)).view(1, -1)
    return F.cross_entropy(x + m_list, target)


def bcl_cases():
    rng = np.random.default_rng(6101)
    cases = {}

    def add(name, b, d, counts, labels=None, alpha=1.0, beta=0.35, t=0.07, tau=1.0, logit_scale=2.0):
        c = len(counts)
        y = long_tail_labels(rng, b, counts) if labels is None else np.asarray(labels, np.int64)
        cases[name] = dict(
            features=unit_rows(rng.standard_normal((b, 2, d))),
            prototypes=unit_rows(rng.standard_normal((c, d))),
            logits=(logit_scale * rng.standard_normal((b, c))).astype(np.float32),
            labels=y,
            counts=np.asarray(counts, np.int64),
            params=[alpha, beta, t, tau],
        )

    isic = [4700, 780, 770, 360, 230, 100, 80]
    tail5 = [100, 40, 15, 5, 2]
    add("isic", 16, 32, isic)
    add("tail5", 8, 16, tail5)
    # Classes missing from the batch: they are present through their prototypes only.
    add("absent_classes", 6, 16, tail5, labels=[0, 0, 0, 1, 1, 0])
    add("unique_labels", 5, 16, tail5, labels=[0, 1, 2, 3, 4])
    add("single_sample", 1, 8, tail5, labels=[3])
    # (C = 1 is left out: the reference squeezes its class-count vector to a 0-d tensor and fails.)
    add("t_half", 8, 16, tail5, t=0.5)
    add("weights", 8, 16, tail5, alpha=0.5, beta=1.0, tau=0.5)
    add("large_logits", 8, 16, isic, logit_scale=30.0)

    tensors = {}
    for name, c in cases.items():
        f = torch.tensor(c["features"], dtype=torch.float64, requires_grad=True)
        p = torch.tensor(c["prototypes"], dtype=torch.float64, requires_grad=True)
        z = torch.tensor(c["logits"], dtype=torch.float64, requires_grad=True)
        y = torch.tensor(c["labels"])
        counts = torch.tensor(c["counts"])
        alpha, beta, t, tau = c["params"]
        scl = bal_scl_ref(p, f, y, len(c["counts"]), t)
        ce = logit_adjust_ref(z, y, counts, tau)
        loss = alpha * ce + beta * scl
        loss.backward()
        assert torch.isfinite(loss), name
        for key in ("features", "prototypes", "logits", "labels", "counts"):
            tensors[f"{name}.{key}"] = torch.tensor(c[key])
        tensors[f"{name}.params"] = torch.tensor(c["params"], dtype=torch.float64)
        tensors[f"{name}.loss"] = loss.detach().reshape(1)
        tensors[f"{name}.ce"] = ce.detach().reshape(1)
        tensors[f"{name}.scl"] = scl.detach().reshape(1)
        tensors[f"{name}.grad_features"] = f.grad
        tensors[f"{name}.grad_prototypes"] = p.grad
        tensors[f"{name}.grad_logits"] = z.grad
    return tensors


# ----------------------------------------------------------------------------------------- MiSLAS
SHAPES = {0: "concave", 1: "linear", 2: "convex", 3: "exp"}


def las_smooth(cls_num_list, smooth_head, smooth_tail, shape, power):
    # methods.py LabelAwareSmoothing.__init__ (float64; the reference then casts to float32).
    n_1 = max(cls_num_list)
    n_K = min(cls_num_list)
    if shape == 'concave':
        smooth = smooth_tail + (smooth_head - smooth_tail) * np.sin((np.array(cls_num_list) - n_K) * np.pi / (2 * (n_1 - n_K)))
    elif shape == 'linear':
        smooth = smooth_tail + (smooth_head - smooth_tail) * (np.array(cls_num_list) - n_K) / (n_1 - n_K)
    elif shape == 'convex':
        smooth = smooth_head + (smooth_head - smooth_tail) * np.sin(1.5 * np.pi + (np.array(cls_num_list) - n_K) * np.pi / (2 * (n_1 - n_K)))
    elif shape == 'exp' and power is not None:
        smooth = smooth_tail + (smooth_head - smooth_tail) * np.power((np.array(cls_num_list) - n_K) / (n_1 - n_K), power)
    return torch.from_numpy(np.asarray(smooth, dtype=np.float64))


def las_ref(x, target, smooth):
    # methods.py LabelAwareSmoothing.forward.
    smoothing = smooth[target]
    confidence = 1. - smoothing
    logprobs = F.log_softmax(x, dim=-1)
    nll_loss = -logprobs.gather(dim=-1, index=target.unsqueeze(1))
    nll_loss = nll_loss.squeeze(1)
    smooth_loss = -logprobs.mean(dim=-1)
    loss = confidence * nll_loss + smoothing * smooth_loss
    return loss.mean()


def las_cases():
    rng = np.random.default_rng(6102)
    isic = [4700, 780, 770, 360, 230, 100, 80]
    tail5 = [100, 40, 15, 5, 2]
    # name: (counts, n, logit scale, smooth_head, smooth_tail, shape id, power)
    cases = {
        "concave_isic": (isic, 24, 2.0, 0.3, 0.0, 0, 0.0),
        "linear_isic": (isic, 24, 2.0, 0.3, 0.0, 1, 0.0),
        "convex_isic": (isic, 24, 2.0, 0.3, 0.0, 2, 0.0),
        "exp2_tail5": (tail5, 16, 2.0, 0.4, 0.1, 3, 2.0),
        "concave_tail5_bounds": (tail5, 16, 2.0, 0.4, 0.1, 0, 0.0),
        "tail_above_head": (tail5, 16, 2.0, 0.0, 0.2, 1, 0.0),
        "large_logits": (isic, 24, 40.0, 0.3, 0.0, 0, 0.0),
    }
    tensors = {}
    for name, (counts, n, scale, head, tail, shape, power) in cases.items():
        logits = (scale * rng.standard_normal((n, len(counts)))).astype(np.float32)
        labels = long_tail_labels(rng, n, counts)
        smooth = las_smooth(counts, head, tail, SHAPES[shape], power)
        z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        loss = las_ref(z, torch.tensor(labels), smooth)
        loss.backward()
        assert torch.isfinite(loss), name
        tensors[f"{name}.logits"] = torch.tensor(logits)
        tensors[f"{name}.labels"] = torch.tensor(labels)
        tensors[f"{name}.counts"] = torch.tensor(counts, dtype=torch.int64)
        tensors[f"{name}.params"] = torch.tensor([head, tail, float(shape), power], dtype=torch.float64)
        tensors[f"{name}.epsilons"] = smooth
        tensors[f"{name}.loss"] = loss.detach().reshape(1)
        tensors[f"{name}.grad_logits"] = z.grad
    return tensors


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for family, make in [("bcl", bcl_cases), ("label_aware_smoothing", las_cases)]:
        tensors = {k: v.contiguous() for k, v in make().items()}
        save_file(tensors, str(OUT / f"{family}.safetensors"))
        cases = sorted({k.split(".")[0] for k in tensors})
        print(f"{family}: {len(cases)} cases: {', '.join(cases)}")


if __name__ == "__main__":
    main()
