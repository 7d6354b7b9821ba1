#!/usr/bin/env python3
"""Parity fixtures for crates/supcon: reference losses in PyTorch (float64) and their gradients.

Run from the repository root:
    python -m venv venv && venv/bin/pip install torch==2.15.0 safetensors==0.8.0 numpy==2.4.6
    venv/bin/python crates/supcon/scripts/make_fixtures.py
(any recent torch gives the same numbers up to float64 rounding). Writes
crates/supcon/tests/fixtures/{supcon,paco,ce}.safetensors. Deterministic (fixed seeds).

Formulations:
- `supcon_ref`: SupContrast's `SupConLoss` (HobbitLong/SupContrast, losses.py, current version,
  which clamps the positive count of anchors without positives to 1, so they contribute 0 and still
  count in the mean). `exclude=True` is the crate's `NoPositive::Exclude` (mean over anchors with
  a positive only).
- `paco_ref`: GPaCo's `PaCoLoss` (the SPMix reference's), as written in docs/method.md step 8:
  anchors = first N rows of F = [q; k; queue], N = rows of the centre logits; log prior
  log(n_c / sum n + 1e-9) added to the centre logits; row max over [centre | contrast] detached;
  +1e-12 inside the log; smoothing smooth/(C-1) off-class, 1-smooth on-class. The only addition
  is the SupContrast-style guard for rows whose weights sum to 0 (beta = 0 and no positive), where
  the published code divides by zero.
- `ce_ref`: cross-entropy of logits + tau * log prior (tau = 0: plain CE; tau = 1: balanced softmax).

Inputs are generated in float32 (that is what the Rust tests feed), the reference runs in float64
on exactly those values. Tensor keys: `{case}.{name}`; labels are int64 (4294967295 = the queue's
UNLABELLED); `{case}.params` holds the hyper-parameters as float64 (order given per family below).
"""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
UNLABELLED = 4294967295


def unit_rows(x):
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return x.astype(np.float32)


def long_tail_labels(rng, n, counts):
    p = np.asarray(counts, dtype=np.float64)
    return rng.choice(len(counts), size=n, p=p / p.sum()).astype(np.int64)


# ----------------------------------------------------------------------------------------- SupCon
def supcon_ref(features, labels, temperature, base_temperature, mode, exclude):
    batch_size = features.shape[0]
    if labels is None:
        mask = torch.eye(batch_size, dtype=torch.float64)
    else:
        labels = labels.contiguous().view(-1, 1)
        mask = torch.eq(labels, labels.T).double()
    contrast_count = features.shape[1]
    contrast_feature = torch.cat(torch.unbind(features, dim=1), dim=0)
    if mode == "one":
        anchor_feature = features[:, 0]
        anchor_count = 1
    else:
        anchor_feature = contrast_feature
        anchor_count = contrast_count
    anchor_dot_contrast = torch.div(torch.matmul(anchor_feature, contrast_feature.T), temperature)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    mask = mask.repeat(anchor_count, contrast_count)
    logits_mask = torch.scatter(
        torch.ones_like(mask), 1, torch.arange(batch_size * anchor_count).view(-1, 1), 0
    )
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mask_pos_pairs = mask.sum(1)
    mask_pos_pairs = torch.where(mask_pos_pairs < 1e-6, 1, mask_pos_pairs)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask_pos_pairs
    loss = -(temperature / base_temperature) * mean_log_prob_pos
    if exclude:
        valid = (mask.sum(1) > 0).double()
        return (loss * valid).sum() / valid.sum().clamp(min=1.0)
    return loss.view(anchor_count, batch_size).mean()


def supcon_cases():
    rng = np.random.default_rng(6001)
    tail = [40, 20, 10, 5, 2]
    cases = {}

    def add(name, b, v, d, labels, t=0.07, tb=0.07, mode="all", exclude=False):
        cases[name] = dict(
            features=unit_rows(rng.standard_normal((b, v, d))),
            labels=labels,
            params=[t, tb, 1.0 if mode == "one" else 0.0, 1.0 if exclude else 0.0],
        )

    add("all_longtail", 16, 2, 32, long_tail_labels(rng, 16, tail))
    add("one_longtail", 16, 2, 32, long_tail_labels(rng, 16, tail), mode="one")
    add("three_views", 10, 3, 24, long_tail_labels(rng, 10, tail), t=0.1, tb=0.07)
    add("one_class", 12, 2, 16, np.zeros(12, np.int64))
    singles = np.array([0, 1, 1, 2, 3, 3, 3, 4, 5, 5], np.int64)
    add("singletons_v1", 10, 1, 16, singles)
    add("singletons_v1_exclude", 10, 1, 16, singles, exclude=True)
    add("singletons_one_v2", 10, 2, 16, singles, mode="one")
    add("simclr", 12, 2, 32, None)
    add("t001", 16, 2, 32, long_tail_labels(rng, 16, tail), t=0.01)
    add("t1", 16, 2, 32, long_tail_labels(rng, 16, tail), t=1.0)

    tensors = {}
    for name, c in cases.items():
        f = torch.tensor(c["features"], dtype=torch.float64, requires_grad=True)
        lab = None if c["labels"] is None else torch.tensor(c["labels"])
        t, tb, mode, exclude = c["params"]
        loss = supcon_ref(f, lab, t, tb, "one" if mode else "all", bool(exclude))
        loss.backward()
        tensors[f"{name}.features"] = torch.tensor(c["features"])
        if lab is not None:
            tensors[f"{name}.labels"] = lab
        tensors[f"{name}.params"] = torch.tensor(c["params"], dtype=torch.float64)
        tensors[f"{name}.loss"] = loss.detach().reshape(1)
        tensors[f"{name}.grad_features"] = f.grad
        assert torch.isfinite(loss), name
    return tensors


# ------------------------------------------------------------------------------------------- PaCo
def paco_ref(features, labels, sup_logits, counts, alpha, beta, gamma, temperature, smooth):
    n, num_classes = sup_logits.shape
    dtype = sup_logits.dtype  # float64 for the fixtures, float32 in scripts/bench_torch.py
    weight = counts.to(dtype) / counts.sum()
    labels = labels.contiguous().view(-1, 1)
    mask = torch.eq(labels[:n], labels.T).to(dtype)
    anchor_dot_contrast = torch.div(torch.matmul(features[:n], features.T), temperature)
    anchor_dot_contrast = torch.cat((sup_logits + torch.log(weight + 1e-9), anchor_dot_contrast), dim=1)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(n).view(-1, 1), 0)
    mask = mask * logits_mask
    one_hot_label = F.one_hot(labels[:n].view(-1), num_classes=num_classes).to(dtype)
    if num_classes > 1:
        one_hot_label = smooth / (num_classes - 1) * (1 - one_hot_label) + (1 - smooth) * one_hot_label
    mask = torch.cat((one_hot_label * beta, mask * alpha), dim=1)
    logits_mask = torch.cat((torch.ones(n, num_classes, dtype=dtype), gamma * logits_mask), dim=1)
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True) + 1e-12)
    mask_sum = mask.sum(1)
    mask_sum = torch.where(mask_sum < 1e-6, 1, mask_sum)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask_sum
    return -mean_log_prob_pos.mean()


def paco_cases():
    rng = np.random.default_rng(6002)
    cases = {}

    def add(name, b, k, d, counts, shared, q_labels=None, queue_labels=None, with_keys=True,
            alpha=0.05, beta=1.0, gamma=1.0, t=0.2, smooth=0.0, logit_scale=2.0):
        c = len(counts)
        yq = long_tail_labels(rng, b, counts) if q_labels is None else np.asarray(q_labels, np.int64)
        yk = yq.copy()
        yqueue = long_tail_labels(rng, k, counts) if queue_labels is None else np.asarray(queue_labels, np.int64)
        parts = [yq, yk, yqueue] if with_keys else [yq, yqueue]
        labels = np.concatenate(parts)
        m = len(labels)
        n = 2 * b if shared else b
        cases[name] = dict(
            features=unit_rows(rng.standard_normal((m, d))),
            labels=labels,
            logits=(logit_scale * rng.standard_normal((n, c))).astype(np.float32),
            counts=np.asarray(counts, np.int64),
            params=[alpha, beta, gamma, t, smooth],
        )

    isic = [4700, 780, 770, 360, 230, 100, 80]
    tail5 = [100, 40, 15, 5, 2]
    add("ema_longtail", 8, 20, 16, tail5, shared=False)
    add("shared_longtail", 8, 20, 16, tail5, shared=True)
    add("shared_isic", 16, 60, 32, isic, shared=True)
    add("one_class_of_four", 6, 12, 16, [30, 0, 5, 1], shared=True,
        q_labels=np.zeros(6), queue_labels=np.zeros(12))
    add("single_class", 6, 12, 16, [10], shared=True,
        q_labels=np.zeros(6), queue_labels=np.zeros(12))
    add("unlabelled_queue", 8, 24, 16, tail5, shared=True, queue_labels=np.full(24, UNLABELLED))
    # F = [q; queue] with unique query labels and an unlabelled queue: no anchor has a positive.
    add("no_positive", 5, 10, 16, tail5, shared=False, q_labels=np.arange(5),
        queue_labels=np.full(10, UNLABELLED), with_keys=False)
    add("no_positive_beta0", 5, 10, 16, tail5, shared=False, q_labels=[0, 1, 2, 3, 3],
        queue_labels=np.full(10, UNLABELLED), with_keys=False, beta=0.0, alpha=1.0)
    add("smooth", 8, 20, 16, tail5, shared=True, smooth=0.1)
    add("weights", 8, 20, 16, tail5, shared=False, alpha=1.0, beta=0.5, gamma=0.5)
    add("t001", 8, 20, 16, tail5, shared=True, t=0.01)
    add("t1", 8, 20, 16, tail5, shared=True, t=1.0)

    tensors = {}
    for name, c in cases.items():
        f = torch.tensor(c["features"], dtype=torch.float64, requires_grad=True)
        z = torch.tensor(c["logits"], dtype=torch.float64, requires_grad=True)
        lab = torch.tensor(c["labels"])
        alpha, beta, gamma, t, smooth = c["params"]
        loss = paco_ref(f, lab, z, torch.tensor(c["counts"]), alpha, beta, gamma, t, smooth)
        loss.backward()
        assert torch.isfinite(loss), name
        tensors[f"{name}.features"] = torch.tensor(c["features"])
        tensors[f"{name}.labels"] = lab
        tensors[f"{name}.logits"] = torch.tensor(c["logits"])
        tensors[f"{name}.counts"] = torch.tensor(c["counts"])
        tensors[f"{name}.params"] = torch.tensor(c["params"], dtype=torch.float64)
        tensors[f"{name}.loss"] = loss.detach().reshape(1)
        tensors[f"{name}.grad_features"] = f.grad
        tensors[f"{name}.grad_logits"] = z.grad
    return tensors


# --------------------------------------------------------------------------------------------- CE
def ce_ref(logits, labels, counts, tau):
    log_prior = torch.log(counts.double() / counts.sum() + 1e-9)
    return F.cross_entropy(logits + tau * log_prior, labels)


def ce_cases():
    rng = np.random.default_rng(6003)
    isic = [4700, 780, 770, 360, 230, 100, 80]
    cases = {
        "plain": (20, 2.0, 0.0),
        "balanced_softmax": (20, 2.0, 1.0),
        "tau_half": (20, 2.0, 0.5),
        "large_logits": (20, 40.0, 1.0),
    }
    tensors = {}
    for name, (n, scale, tau) in cases.items():
        logits = (scale * rng.standard_normal((n, len(isic)))).astype(np.float32)
        labels = long_tail_labels(rng, n, isic)
        z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        loss = ce_ref(z, torch.tensor(labels), torch.tensor(isic), tau)
        loss.backward()
        tensors[f"{name}.logits"] = torch.tensor(logits)
        tensors[f"{name}.labels"] = torch.tensor(labels)
        tensors[f"{name}.counts"] = torch.tensor(isic, dtype=torch.int64)
        tensors[f"{name}.params"] = torch.tensor([tau], dtype=torch.float64)
        tensors[f"{name}.loss"] = loss.detach().reshape(1)
        tensors[f"{name}.grad_logits"] = z.grad
    return tensors


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for family, make in [("supcon", supcon_cases), ("paco", paco_cases), ("ce", ce_cases)]:
        tensors = {k: v.contiguous() for k, v in make().items()}
        save_file(tensors, str(OUT / f"{family}.safetensors"))
        cases = sorted({k.split(".")[0] for k in tensors})
        print(f"{family}: {len(cases)} cases: {', '.join(cases)}")


if __name__ == "__main__":
    main()
