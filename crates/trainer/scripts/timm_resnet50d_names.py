#!/usr/bin/env python3
"""Writes the tensor names, shapes and dtypes of timm's `resnet50d` state dict (no weights) to
crates/trainer/tests/fixtures/timm_resnet50d_tensors.json.

`run.pretrained` accepts the file timm publishes for this model (`model.safetensors` of
`timm/resnet50d.ra2_in1k`), whose names are those of `state_dict()`; the test
`crates/trainer/tests/pretrained_trunk.rs` builds a zero-filled safetensors file from this list
and checks that it fills every trunk tensor of the full-size hybrid. No weights are downloaded:
`pretrained=False` gives the same names and shapes.

Run from the repository root, in the reference Python environment (BENCHMARKS.md):
    python3 -m venv .venv-reference
    .venv-reference/bin/pip install -r scripts/reference-python-requirements.txt
    .venv-reference/bin/python crates/trainer/scripts/timm_resnet50d_names.py
"""
import json
from pathlib import Path

import timm
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "timm_resnet50d_tensors.json"
# torch dtype -> safetensors dtype name
DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def main() -> None:
    model = timm.create_model("resnet50d", pretrained=False)
    tensors = [
        {"name": name, "shape": list(t.shape), "dtype": DTYPES[t.dtype]}
        for name, t in model.state_dict().items()
    ]
    doc = {
        "model": "resnet50d",
        "source": "timm.create_model('resnet50d', pretrained=False).state_dict()",
        "timm": timm.__version__,
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tensors": tensors,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One tensor a line, so a diff shows which names changed.
    head = json.dumps({k: v for k, v in doc.items() if k != "tensors"}, indent=1)[:-2]
    rows = ",\n".join("  " + json.dumps(t) for t in tensors)
    OUT.write_text(f'{head},\n "tensors": [\n{rows}\n ]\n}}\n')
    print(f"wrote {len(tensors)} tensors to {OUT}")


if __name__ == "__main__":
    main()
