"""The pipeline's decisions and error paths, on a fake engine: nothing is tagged before
verify passed, a build failure is one line, push needs an image every test of which
passed, a one-platform push and a multi-platform index get tags of one scheme, and a
pulled image whose labels do not match is refused and removed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from torchenv import engine
from torchenv.engine import RunResult
from torchenv.errors import TorchenvError
from torchenv.locking.locks import read_lock
from torchenv.model import names, platforms
from torchenv.model.matrix import Matrix, Variant, load_matrix
from torchenv.model.names import Label
from torchenv.model.records import PushRecord, TestRecord
from torchenv.model.settings import Settings
from torchenv.pipeline import build, build_records, cosign, publish, testrecords

from .fake_engine import FakeEngine

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def matrix() -> Matrix:
    return load_matrix()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(work_dir=tmp_path / "work", digests_file=tmp_path / "digests.json")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """A fake engine in which a build's image reports the matrix's versions, and no preflight reaches out."""
    replacement = FakeEngine()
    monkeypatch.setattr(build.wheels, "require_reachable", lambda variant, settings: None)
    monkeypatch.setattr(build, "base_image_for", lambda variant, settings: "torchenv-base:fake")
    monkeypatch.setattr(build, "git_revision", lambda: REVISION)
    with engine.use(replacement):
        yield replacement


def answers_versions(fake: FakeEngine, torch: str, python: str = "3.11") -> None:
    fake.answers["python"] = RunResult(0, "", stdout=json.dumps({"torch": torch, "python": python}))


def test_a_build_is_tagged_only_after_verify_passed(fake: FakeEngine, matrix: Matrix, settings: Settings) -> None:
    variant = matrix.get("cu117")
    answers_versions(fake, variant.torch)
    tag = build.build_variant(variant, matrix, settings)
    assert tag == "torchenv:cu117"
    steps = [name for name, _ in fake.calls]
    verify_at = next(i for i, (name, what) in enumerate(fake.calls) if name == "run" and what[1] == ("verify",))
    assert steps.index("build") < verify_at < steps.index("tag")
    image_id = fake.tags["torchenv:cu117"]
    assert fake.tags_of(image_id, "torchenv") == sorted(["2.0.1-cu117-py3.11-0123456", "2.0.1-cu117", "cu117", "latest"])
    labels = fake.images[image_id].labels
    assert labels[Label.LOCK_SHA256] == read_lock(variant).sha256 and labels[Label.REVISION] == REVISION


def test_a_build_that_fails_verify_tags_nothing(fake: FakeEngine, matrix: Matrix, settings: Settings) -> None:
    fake.answers["verify"] = RunResult(1, "FAIL")
    with pytest.raises(TorchenvError, match=r"^cu117 built as sha256:\w+ but failed verify \(report above\); nothing was tagged$"):
        build.build_variant(matrix.get("cu117"), matrix, settings)
    assert fake.tags == {}


def test_a_build_failure_is_its_reason_in_one_line(fake: FakeEngine, matrix: Matrix, settings: Settings) -> None:
    fake.build_exit = 1
    fake.build_tail = ("Hash mismatch for `idna==3.20`", "Expected:", "  sha256:" + "0" * 64, "Computed:", "  sha256:" + "a" * 64)
    with pytest.raises(TorchenvError) as caught:
        build.build_variant(matrix.get("cu117"), matrix, settings)
    assert str(caught.value) == (
        "the build of cu117 failed: idna==3.20 does not match its hash in the lock "
        "(expected sha256 0000000000000000..., downloaded aaaaaaaaaaaaaaaa...); nothing was tagged"
    )
    assert fake.tags == {}


def test_an_image_holding_another_torch_is_not_tagged(fake: FakeEngine, matrix: Matrix, settings: Settings) -> None:
    answers_versions(fake, "2.1.2")
    with pytest.raises(TorchenvError, match=r"holds torch 2.1.2 on Python 3.11, the matrix says cu117 is torch 2.0.1 .*nothing was tagged"):
        build.build_variant(matrix.get("cu117"), matrix, settings)
    assert fake.tags == {}


def test_an_emulated_build_is_tagged_with_its_architecture_and_never_latest(fake: FakeEngine, matrix: Matrix, settings: Settings) -> None:
    variant = matrix.get("cpu", platforms.ARM64)
    fake_platforms = pytest.MonkeyPatch()
    fake_platforms.setattr(build.platforms, "require_runnable", lambda platform: None)
    try:
        answers_versions(fake, variant.torch)
        build.build_variant(variant, matrix, settings)
    finally:
        fake_platforms.undo()
    image_id = fake.tags["torchenv:cpu-arm64"]
    assert fake.tags_of(image_id, "torchenv") == sorted(["2.0.1-cpu-arm64-py3.11-0123456", "2.0.1-cpu-arm64", "cpu-arm64"])


def built(fake: FakeEngine, variant: Variant, settings: Settings, *, record: str | None = "passed") -> str:
    """An image of VARIANT as a build here leaves it (tagged), with a test record."""
    lock = read_lock(variant)
    labels = names.identity_labels(variant, lock.sha256 if lock else names.UNLOCKED) | {Label.REVISION: REVISION}
    image_id = fake.add_image(variant.build_name, labels, variant.platform)
    fake.tags[f"{settings.image_name}:{variant.local_name}"] = image_id
    if record:
        testrecords.add_result(image_id, settings, "tests/images/test_runtime.py::test_one", record)
    return image_id


def test_push_needs_a_record_in_which_every_test_passed(fake: FakeEngine, matrix: Matrix, settings: Settings) -> None:
    variant = matrix.get("cu117")
    image_id = built(fake, variant, settings, record=None)
    with pytest.raises(TorchenvError, match=r"has no passing test record; run `invoke test --variant cu117` first, then push$"):
        publish.push("cu117", matrix, settings, "127.0.0.1:5000", "gzip")
    testrecords.add_result(image_id, settings, "tests/images/test_runtime.py::test_two", "skipped")
    testrecords.add_result(image_id, settings, "tests/images/test_runtime.py::test_one", "passed")
    with pytest.raises(TorchenvError, match="has no passing test record"):  # a skip is no pass
        publish.push("cu117", matrix, settings, "127.0.0.1:5000", "gzip")
    assert ("push", "127.0.0.1:5000/torchenv:cu117") not in fake.calls


def test_push_needs_the_lock_to_be_committed(fake: FakeEngine, matrix: Matrix, settings: Settings, monkeypatch) -> None:
    """An image built from a lock its first build wrote: a pull elsewhere could not check it."""
    built(fake, matrix.get("cu117"), settings)
    monkeypatch.setattr(publish.git, "is_committed", lambda path: False)
    with pytest.raises(TorchenvError, match=r"^images/locks/cu117.txt is not committed \(a build wrote it\); commit it, so that"):
        publish.push("cu117", matrix, settings, "127.0.0.1:5000", "gzip")
    assert not [call for call in fake.calls if call[0] == "push"]
    monkeypatch.setattr(publish.git, "is_committed", lambda path: None)  # no checkout: git cannot tell
    assert publish.push("cu117", matrix, settings, "127.0.0.1:5000", "gzip").digest


def test_one_platform_push_and_multi_platform_index_get_tags_of_one_scheme(fake: FakeEngine, matrix: Matrix, settings: Settings) -> None:
    built(fake, matrix.get("cu117"), settings)
    arm64 = matrix.get("cpu", platforms.ARM64)
    built(fake, arm64, settings)
    single = publish.push("cu117", matrix, settings, "127.0.0.1:5000", "gzip")
    index = publish.push("cpu", matrix, settings, "127.0.0.1:5000", "gzip")
    assert list(single.tags) == ["2.0.1-cu117-py3.11-0123456", "2.0.1-cu117", "cu117", "latest"]
    assert list(index.tags) == ["2.0.1-cpu-py3.11-0123456", "2.0.1-cpu", "cpu"]
    for record, name in ((single, "cu117"), (index, "cpu")):
        release = matrix.get(name).torch_release
        latest = name == matrix.default_variant
        assert list(record.tags) == names.tag_names(torch=release, name=name, python="3.11", commit="0123456", latest=latest)
    # The index lists the platform's own image, pushed as <variant>-<arch>; every tag names the index.
    assert ("push", "127.0.0.1:5000/torchenv:cpu-arm64") in fake.calls
    created = [target for name, (target, _) in (call for call in fake.calls if call[0] == "imagetools_create")]
    assert created == [f"127.0.0.1:5000/torchenv:{tag}" for tag in index.tags]
    # Each is recorded in one shape, and read back the same.
    recorded = json.loads(settings.digests_file.read_text())
    assert PushRecord.from_json(recorded["cu117"]) == single and PushRecord.from_json(recorded["cpu"]) == index
    assert set(index.platforms) == {platforms.ARM64} and set(single.platforms) == {platforms.AMD64}
    assert not [tag for tag in fake.tags if tag.startswith("127.0.0.1:5000/")], "push aliases are removed"


def test_a_failed_push_is_one_line_and_leaves_no_alias(fake: FakeEngine, matrix: Matrix, settings: Settings) -> None:
    built(fake, matrix.get("cu117"), settings)
    fake.push_error = "dial tcp 127.0.0.1:5000: connect: connection refused"
    with pytest.raises(TorchenvError) as caught:
        publish.push("cu117", matrix, settings, "127.0.0.1:5000", "gzip")
    message = str(caught.value)
    assert message.startswith("pushing 127.0.0.1:5000/torchenv:") and "connection refused" in message
    assert "check that the registry 127.0.0.1:5000 runs" in message and "\n" not in message
    assert not [tag for tag in fake.tags if tag.startswith("127.0.0.1:5000/")]
    assert not settings.digests_file.exists()


def test_a_pulled_image_from_another_lock_is_refused_and_removed(fake: FakeEngine, matrix: Matrix, settings: Settings) -> None:
    variant = matrix.get("cu117")
    pushed = built(fake, variant, settings)
    record = publish.push("cu117", matrix, settings, "127.0.0.1:5000", "gzip")
    reference = f"127.0.0.1:5000/torchenv@{record.digest}"
    other = fake.add_image("from another lock", {**fake.images[pushed].labels, Label.LOCK_SHA256: "f" * 64})
    fake.pullable[reference] = other
    with pytest.raises(TorchenvError, match=rf"refusing {reference}: io.torchenv.lock-sha256 is 'f{{64}}', expected '[0-9a-f]{{64}}'"):
        publish.pull(variant, matrix, settings)
    assert reference not in fake.tags and fake.tags["torchenv:cu117"] == pushed


def test_a_test_record_counts_a_skip_as_no_pass() -> None:
    record = TestRecord("sha256:x")
    record.add("a", "passed")
    assert record.all_passed
    record.add("b", "skipped")
    assert not record.all_passed
    record.add("b", "passed")
    assert record.all_passed and record.skipped == []
    assert TestRecord.from_json(record.to_json()) == record


def test_the_test_tiers_build_the_hosts_platform_unless_asked_for_every_one() -> None:
    from torchenv.commands import testrun

    unit, rest = testrun.tiers()
    assert unit.arguments == ("tests/unit", "-m", "unit") and "--platforms" not in rest.arguments
    _, every = testrun.tiers(variant="cpu", every_platform=True)
    assert every.arguments[-4:] == ("--variants", "cpu", "--platforms", "all")
    assert testrun.tiers(unit_only=True, every_platform=True) == [unit]


def test_the_build_records_what_the_provenance_will_say(fake: FakeEngine, matrix: Matrix, settings: Settings) -> None:
    variant = matrix.get("cu117")
    answers_versions(fake, variant.torch)
    build.build_variant(variant, matrix, settings)
    image_id = fake.tags["torchenv:cu117"]
    facts = build_records.read_record(image_id, settings)
    assert facts.variant == "cu117" and facts.revision == REVISION and facts.lock_sha256 == read_lock(variant).sha256  # type: ignore[union-attr]
    assert facts.build_args["VARIANT"] == "cu117" and facts.buildkit == "v0.0.0-fake" and facts.target == "torchenv-runtime"


def test_a_signed_push_gathers_everything_before_the_first_byte(
    fake: FakeEngine, matrix: Matrix, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cosign, "binary", lambda: "/usr/bin/cosign")
    key = tmp_path / "cosign.key"
    key.write_text("not a real key")
    signing = dataclasses.replace(settings, sign_key=str(key))
    built(fake, matrix.get("cu117"), settings)
    # An image with no build record (built elsewhere): no provenance, so nothing is pushed.
    with pytest.raises(TorchenvError, match=r"^no build record of sha256:\w+ in .*build-records .*so there is no provenance to sign"):
        publish.push("cu117", matrix, signing, "127.0.0.1:5000", "gzip")
    assert not [call for call in fake.calls if call[0] == "push"]
    # A key file that is not there: the same.
    with pytest.raises(TorchenvError, match=r"signing key .*gone.key \(TORCHENV_SIGN_KEY\) does not exist"):
        publish.push("cu117", load_matrix(), dataclasses.replace(settings, sign_key=str(tmp_path / "gone.key")), "127.0.0.1:5000", "gzip")
    assert not [call for call in fake.calls if call[0] == "push"]
