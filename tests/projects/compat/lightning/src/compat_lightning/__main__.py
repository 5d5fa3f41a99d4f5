"""Fit a seeded classifier with pytorch_lightning.Trainer on the CPU; write its weights
(state_dict) and each epoch's loss to OUT."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

FEATURES, CLASSES = 16, 4


def dataset(seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(CLASSES, FEATURES, generator=generator) * 3
    labels = torch.randint(0, CLASSES, (512,), generator=generator)
    features = centers[labels] + torch.randn(512, FEATURES, generator=generator)
    return TensorDataset(features, labels)


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, CLASSES))


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = model()
        self.accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=CLASSES)
        self.losses: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        features, labels = batch
        logits = self.net(features)
        loss = nn.functional.cross_entropy(logits, labels)
        self.accuracy(logits, labels)
        self.log("loss", loss, on_epoch=True, on_step=False)
        self.log("accuracy", self.accuracy, on_epoch=True, on_step=False)
        return loss

    def on_train_epoch_end(self) -> None:
        self.losses.append(float(self.trainer.callback_metrics["loss"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    pl.seed_everything(args.seed)
    classifier = Classifier()
    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(classifier, DataLoader(dataset(args.seed), batch_size=64, shuffle=True))
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(classifier.net.state_dict(), args.out / "weights.pt")
    metrics = {"losses": classifier.losses, "accuracy": float(trainer.callback_metrics["accuracy"]), "lightning": pl.__version__}
    (args.out / "metrics.json").write_text(json.dumps(metrics))
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
