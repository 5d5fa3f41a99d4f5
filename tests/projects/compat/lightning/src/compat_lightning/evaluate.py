"""The saved weights in a model built afresh, on the seeded data, against the untrained
model of the same seed: what the training did, read from the file and not from its log."""

from __future__ import annotations

import json
import sys

import torch
from torch import nn

from compat_lightning.__main__ import dataset, model


def main() -> None:
    folder, seed = sys.argv[1], int(sys.argv[2])
    features, labels = dataset(seed).tensors
    torch.manual_seed(seed)
    untrained, trained = model(), model()
    trained.load_state_dict(torch.load(f"{folder}/weights.pt", map_location="cpu", weights_only=True))
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(net(features), labels).item() for net in (untrained, trained)]
    print(json.dumps({"untrained": losses[0], "trained": losses[1]}))


if __name__ == "__main__":
    main()
