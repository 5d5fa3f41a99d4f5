"""Train a timm ResNet-18 (random init) for a few steps on one seeded batch of images on
the CPU; write its weights and each step's loss to OUT."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import timm
import torch
from torch import nn

ARCHITECTURE, CLASSES, SIZE = "resnet18", 4, 64


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(16) % CLASSES
    # Each class its own brightness pattern, plus noise: learnable in a few steps.
    patterns = torch.randn(CLASSES, 3, SIZE, SIZE, generator=generator)
    images = patterns[labels] + 0.5 * torch.randn(16, 3, SIZE, SIZE, generator=generator)
    return images, labels


def model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(ARCHITECTURE, pretrained=False, num_classes=CLASSES)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    net = model(args.seed)
    images, labels = batch(args.seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net.train()
    losses = []
    for _ in range(args.steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), args.out / "weights.pt")
    metrics = {"losses": losses, "model": ARCHITECTURE, "timm": timm.__version__}
    (args.out / "metrics.json").write_text(json.dumps(metrics))
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
