"""Train a seeded classifier with DeepSpeedCPUAdam, whose C++ op DeepSpeed compiles with
ninja through torch.utils.cpp_extension when it is first used; write the weights, each
epoch's loss and where the op was built to OUT."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

# No GPU here: DeepSpeed's CPU accelerator builds the CPU flavour of its ops.
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import deepspeed
import torch
from deepspeed.ops.adam import DeepSpeedCPUAdam
from torch import nn

FEATURES, CLASSES = 16, 4


def data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(CLASSES, FEATURES, generator=generator) * 3
    labels = torch.randint(0, CLASSES, (512,), generator=generator)
    return centers[labels] + torch.randn(512, FEATURES, generator=generator), labels


def model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, CLASSES))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    net = model(args.seed)
    optimizer = DeepSpeedCPUAdam(net.parameters(), lr=1e-2)
    features, labels = data(args.seed)
    losses = []
    for _ in range(args.epochs):
        total = 0.0
        for start in range(0, len(labels), 64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(net(features[start : start + 64]), labels[start : start + 64])
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total / (len(labels) // 64))
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), args.out / "weights.pt")
    op = getattr(optimizer, "ds_opt_adam", None)
    metrics = {"losses": losses, "deepspeed": deepspeed.__version__, "op_file": getattr(op, "__file__", "")}
    (args.out / "metrics.json").write_text(json.dumps(metrics))
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
