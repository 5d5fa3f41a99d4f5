"""The pieces of a restart that need no process group: the advice a rank gives when a peer
is gone, by the restarts left; the words that mean a peer is gone; a signal's name."""

from __future__ import annotations

import sys

import pytest

from torchenv import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "docker" / "app"))
from torchenv_app import distributed, elastic, train


@pytest.mark.parametrize(
    ("allowed", "done", "advice"),
    [
        ("0", "0", "rerun on every node, with --max-restarts 1 or more to resume from the last epoch's checkpoint by itself"),
        ("2", "0", "torchrun starts every process again (restart 1 of 2) and train resumes from the last epoch's checkpoint"),
        ("2", "2", "rerun on every node, with --max-restarts 3 or more to resume from the last epoch's checkpoint by itself"),
    ],
)
def test_the_advice_follows_the_restarts_left(allowed: str, done: str, advice: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(distributed.MAX_RESTARTS_ENV, allowed)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", done)
    assert train.restart_advice() == advice


def test_a_peer_gone_is_told_from_other_errors() -> None:
    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:598] Connection closed by peer [192.168.208.3]:43673")
    assert elastic.peer_gone(gloo)
    assert not elastic.peer_gone(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))


def test_a_signal_has_its_name() -> None:
    assert distributed.signal_name(9) == "SIGKILL" and distributed.signal_name(99) == "signal 99"


def test_a_checkpoint_is_stamped_with_its_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-7")
    stamped = elastic.stamp({"history": []})
    assert stamped["run_id"] == "job-7" and stamped["saved_at"] > 0 and stamped["history"] == []
