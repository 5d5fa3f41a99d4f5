"""The saved weights in a model created afresh from timm's registry, on the seeded batch,
against the untrained model of the same seed, both on batch statistics as in training."""

from __future__ import annotations

import json
import sys

import torch
from torch import nn

from compat_timm.__main__ import batch, model


def main() -> None:
    folder, seed = sys.argv[1], int(sys.argv[2])
    images, labels = batch(seed)
    untrained, trained = model(seed), model(seed)
    trained.load_state_dict(torch.load(f"{folder}/weights.pt", map_location="cpu", weights_only=True))
    losses = []
    for net in (untrained, trained):
        net.train()  # batch statistics, as in training: 8 steps leave the running ones behind
        with torch.no_grad():
            losses.append(nn.functional.cross_entropy(net(images), labels).item())
    print(json.dumps({"untrained": losses[0], "trained": losses[1]}))


if __name__ == "__main__":
    main()
