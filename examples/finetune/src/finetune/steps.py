"""The six steps. Each reads what the step before it wrote under OUT, writes its own
files and returns its metrics; `finetune.__main__` writes those to OUT/<step>.json."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

# Nothing is downloaded at run time: the model is built from a config, the tokenizer
# trained here. The libraries must not try the Hub either (the containers are offline).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from finetune import corpus

SEED = 20230315  # torch 2.0's release day
PAD, UNK, EOS = "[PAD]", "[UNK]", "[EOS]"
CONTEXT = 24


def seed_everything(seed: int = SEED) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def tokenizer_at(out: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"), pad_token=PAD, unk_token=UNK, eos_token=EOS)


def encode(tokenizer: PreTrainedTokenizerFast, sentences: list[str]) -> torch.Tensor:
    ids = tokenizer([f"{s} {EOS}" for s in sentences], padding="max_length", max_length=CONTEXT, truncation=True, return_tensors="pt")
    return ids["input_ids"]


def labels_of(input_ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Padding takes no part in the loss."""
    return input_ids.masked_fill(input_ids == pad_id, -100)


# ---- 1. preprocess ------------------------------------------------------------------------
def preprocess(out: Path, quick: bool) -> dict[str, Any]:
    """Train a word-level tokenizer on the corpus; tokenize it; split train and held-out."""
    sentences = corpus.pretraining_sentences(400 if quick else 4000, SEED)
    trained = Tokenizer(models.WordLevel(unk_token=UNK))
    trained.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trained.train_from_iterator([*sentences, *corpus.task_sentences(50, SEED)], trainers.WordLevelTrainer(special_tokens=[PAD, UNK, EOS]))
    trained.save(str(out / "tokenizer.json"))
    tokenizer = tokenizer_at(out)
    held_out = len(sentences) // 10
    data = {"train": encode(tokenizer, sentences[held_out:]), "held_out": encode(tokenizer, sentences[:held_out])}
    torch.save(data, out / "data.pt")
    unknown = int((torch.cat(list(data.values())) == tokenizer.unk_token_id).sum())
    return {
        "vocabulary": tokenizer.vocab_size,
        "train_sentences": len(data["train"]),
        "held_out_sentences": held_out,
        "unknown_tokens": unknown,
    }


# ---- 2. design ----------------------------------------------------------------------------
def model_config(vocabulary: int) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocabulary, n_positions=CONTEXT, n_embd=64, n_layer=2, n_head=4, bos_token_id=2, eos_token_id=2, pad_token_id=0
    )


def new_model(out: Path) -> GPT2LMHeadModel:
    return GPT2LMHeadModel(model_config(tokenizer_at(out).vocab_size))


def design(out: Path, quick: bool) -> dict[str, Any]:
    """A small GPT-style model from a config (no pretrained weights), saved untrained."""
    seed_everything()
    model = new_model(out)
    model.save_pretrained(out / "untrained")
    config = model.config
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": config.n_layer,
        "width": config.n_embd,
        "heads": config.n_head,
    }


# ---- 3. train -----------------------------------------------------------------------------
def train_steps(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, steps: int, learning_rate: float, device: str
) -> list[float]:
    """STEPS of AdamW on random batches of 32 (seeded); only trainable parameters move."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    losses = []
    for _ in range(steps):
        chosen = torch.randint(len(inputs), (32,), generator=generator)
        loss = model(input_ids=inputs[chosen].to(device), labels=labels[chosen].to(device)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def train(out: Path, quick: bool, device: str) -> dict[str, Any]:
    """Pretrain on the train split; the loss must fall."""
    seed_everything()
    model = GPT2LMHeadModel.from_pretrained(out / "untrained").to(device)
    data = torch.load(out / "data.pt")["train"]
    steps = 40 if quick else 300
    losses = train_steps(model, data, labels_of(data, tokenizer_at(out).pad_token_id), steps, 3e-3, device)
    model.save_pretrained(out / "pretrained")
    return {"steps": steps, "initial_loss": losses[0], "final_loss": mean(losses[-max(1, steps // 10) :]), "losses": losses}


# ---- 4. evaluate --------------------------------------------------------------------------
@torch.no_grad()
def perplexity(model: torch.nn.Module, data: torch.Tensor, device: str, pad_id: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data), 64):
        batch = data[start : start + 64].to(device)
        labels = labels_of(batch, pad_id)
        tokens = int((labels[:, 1:] != -100).sum())
        total += model(input_ids=batch, labels=labels).loss.item() * tokens
        count += tokens
    return math.exp(total / count)


def evaluate(out: Path, quick: bool, device: str) -> dict[str, Any]:
    """Held-out perplexity of the trained model against the untrained one."""
    held_out = torch.load(out / "data.pt")["held_out"]
    pad_id = tokenizer_at(out).pad_token_id
    untrained = perplexity(GPT2LMHeadModel.from_pretrained(out / "untrained").to(device), held_out, device, pad_id)
    trained = perplexity(GPT2LMHeadModel.from_pretrained(out / "pretrained").to(device), held_out, device, pad_id)
    return {"untrained_perplexity": untrained, "trained_perplexity": trained, "vocabulary": tokenizer_at(out).vocab_size}


# ---- 5. fine-tune -------------------------------------------------------------------------
def task_data(out: Path, quick: bool) -> dict[str, torch.Tensor]:
    tokenizer = tokenizer_at(out)
    sentences = corpus.task_sentences(200 if quick else 1000, SEED + 1)
    held_out = len(sentences) // 5
    return {"train": encode(tokenizer, sentences[held_out:]), "held_out": encode(tokenizer, sentences[:held_out])}


def lora_model(base: GPT2LMHeadModel):
    # GPT-2 keeps its projections in Conv1D (weights transposed): fan_in_fan_out.
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn", "c_proj"], lora_dropout=0.0, fan_in_fan_out=True, bias="none")
    return get_peft_model(base, config)


def finetune(out: Path, quick: bool, device: str) -> dict[str, Any]:
    """LoRA on the second task: its held-out perplexity must fall, and only the adapter may change."""
    seed_everything()
    pad_id = tokenizer_at(out).pad_token_id
    data = task_data(out, quick)
    base = GPT2LMHeadModel.from_pretrained(out / "pretrained").to(device)
    before = perplexity(base, data["held_out"], device, pad_id)
    model = lora_model(base)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    adapter = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    steps = 40 if quick else 300
    losses = train_steps(model, data["train"], labels_of(data["train"], pad_id), steps, 1e-2, device)
    after = perplexity(model, data["held_out"], device, pad_id)
    changed_frozen = [name for name, p in model.named_parameters() if name in frozen and not torch.equal(p, frozen[name])]
    changed_adapter = [name for name, p in model.named_parameters() if name in adapter and not torch.equal(p, adapter[name])]
    model.save_pretrained(out / "adapter")
    model.merge_and_unload().save_pretrained(out / "finetuned")
    return {
        "steps": steps,
        "task_perplexity_before": before,
        "task_perplexity_after": after,
        "initial_loss": losses[0],
        "final_loss": mean(losses[-max(1, steps // 10) :]),
        "adapter_parameters": sum(p.numel() for p in adapter.values()),
        "frozen_parameters": sum(p.numel() for p in frozen.values()),
        "adapter_tensors": len(adapter),
        "adapter_tensors_changed": len(changed_adapter),
        "frozen_tensors_changed": changed_frozen,
        "trainable_outside_adapter": [name for name in adapter if "lora_" not in name],
        "losses": losses,
    }


# ---- 6. deploy ----------------------------------------------------------------------------
class Logits(torch.nn.Module):
    """The model as TorchScript traces it: token ids in, logits out (no cache, no dict)."""

    def __init__(self, model: GPT2LMHeadModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False, return_dict=False)[0]


LOAD_AND_RUN = """
import sys, torch
model = torch.jit.load(sys.argv[1], map_location="cpu")
inputs = torch.load(sys.argv[2])
torch.save(model(inputs), sys.argv[3])
"""


def deploy(out: Path, quick: bool, device: str) -> dict[str, Any]:
    """The fine-tuned model as TorchScript, loaded in a fresh process: the same logits."""
    # Eager attention traces to TorchScript the same on every torch 2.x.
    model = Logits(GPT2LMHeadModel.from_pretrained(out / "finetuned", attn_implementation="eager")).eval()
    # The first words of held-out sentences of the task, as a batch of prompts.
    inputs = task_data(out, quick)["held_out"][:8, :6]
    with torch.no_grad():
        traced = torch.jit.trace(model, inputs)
        expected = model(inputs)
    torch.jit.save(traced, str(out / "model.torchscript.pt"))
    torch.save(inputs, out / "deploy-inputs.pt")
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_AND_RUN,
            str(out / "model.torchscript.pt"),
            str(out / "deploy-inputs.pt"),
            str(out / "deploy-outputs.pt"),
        ],
        capture_output=True,
        text=True,
    )
    if fresh.returncode != 0:
        raise RuntimeError(f"the exported model did not load in a fresh process: {fresh.stderr.strip().splitlines()[-1:]}")
    loaded = torch.load(out / "deploy-outputs.pt")
    return {
        "format": "torchscript",
        "file_bytes": (out / "model.torchscript.pt").stat().st_size,
        "max_abs_difference": float((loaded - expected).abs().max()),
        "same_predictions": bool(torch.equal(loaded[:, -1].argmax(-1), expected[:, -1].argmax(-1))),
    }


STEPS = {
    "preprocess": lambda out, quick, device: preprocess(out, quick),
    "design": lambda out, quick, device: design(out, quick),
    "train": train,
    "evaluate": evaluate,
    "finetune": finetune,
    "deploy": deploy,
}


def write_metrics(out: Path, step: str, metrics: dict[str, Any]) -> None:
    (out / f"{step}.json").write_text(json.dumps(metrics, indent=2) + "\n")
