"""The pipeline's claims, run inside the project's image (`invoke test --project
examples/finetune`): each step's assertion is read back from the JSON the step wrote,
and the exported model is loaded again here, in another process than the one that made it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

DEVICE = os.environ.get("FINETUNE_DEVICE", "cpu")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pipeline, once, in a process of its own; TORCHENV_OUT keeps its files."""
    target = Path(os.environ["FINETUNE_OUT"]) if os.environ.get("FINETUNE_OUT") else tmp_path_factory.mktemp("finetune")
    subprocess.run([sys.executable, "-m", "finetune", "--out", str(target), "--device", DEVICE], check=True)
    return target


def metrics(out: Path, step: str) -> dict:
    return json.loads((out / f"{step}.json").read_text())


def test_preprocess_splits_the_corpus_without_unknown_words(out: Path) -> None:
    found = metrics(out, "preprocess")
    assert found["train_sentences"] > 0 and found["held_out_sentences"] > 0
    assert found["unknown_tokens"] == 0


def test_design_is_a_small_gpt_from_a_config(out: Path) -> None:
    found = metrics(out, "design")
    assert found["layers"] == 2 and 10_000 < found["parameters"] < 1_000_000
    assert (out / "untrained" / "config.json").exists()


def test_train_loss_falls(out: Path) -> None:
    found = metrics(out, "train")
    assert found["final_loss"] < 0.5 * found["initial_loss"]


def test_held_out_perplexity_is_well_below_the_untrained_models(out: Path) -> None:
    found = metrics(out, "evaluate")
    # An untrained model is about as perplexed as the vocabulary is large.
    assert found["untrained_perplexity"] > 0.5 * found["vocabulary"]
    assert found["trained_perplexity"] < 0.25 * found["untrained_perplexity"]


def test_lora_improves_the_task_and_changes_only_the_adapter(out: Path) -> None:
    found = metrics(out, "finetune")
    assert found["task_perplexity_after"] < 0.5 * found["task_perplexity_before"]
    assert found["frozen_tensors_changed"] == [] and found["trainable_outside_adapter"] == []
    assert found["adapter_tensors_changed"] == found["adapter_tensors"] > 0
    assert found["adapter_parameters"] < 0.2 * found["frozen_parameters"]
    assert (out / "adapter" / "adapter_config.json").exists()


def test_the_exported_model_gives_the_same_outputs_in_a_fresh_process(out: Path) -> None:
    found = metrics(out, "deploy")
    assert found["max_abs_difference"] < 1e-4 and found["same_predictions"]
    # Independently of the step's own report: load the export here and compare with the
    # merged model the fine-tune step saved.
    from transformers import GPT2LMHeadModel

    inputs = torch.load(out / "deploy-inputs.pt")
    exported = torch.jit.load(str(out / "model.torchscript.pt"))(inputs)
    with torch.no_grad():
        merged = GPT2LMHeadModel.from_pretrained(out / "finetuned", attn_implementation="eager").eval()(inputs).logits
    assert torch.allclose(exported, merged, atol=1e-4)
