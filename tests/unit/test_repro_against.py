from pathlib import Path
from typing import Any

import pytest

from torchenv.errors import TorchenvError
from torchenv.model.settings import Settings
from torchenv.pipeline import repro_against, zstd_layout
from torchenv.pipeline.published import Published, repository_of

ZSTD = zstd_layout.ZSTD_LAYER_MEDIA_TYPE
GZIP = zstd_layout.GZIP_LAYER_MEDIA_TYPES[0]


def image(
    digest: str, layers: list[tuple[str, str]], media_type: str = ZSTD, labels: dict[str, str] | None = None, level: str = "9"
) -> Published:
    """LAYERS: (compressed digest, diff ID) each."""
    manifest: dict[str, Any] = {
        "layers": [{"mediaType": media_type, "digest": blob, "size": 1} for blob, _ in layers],
        "annotations": {zstd_layout.LEVEL_ANNOTATION: level},
    }
    config = {"config": {"Labels": labels or {"a": "1"}, "Env": ["PATH=/x"]}, "rootfs": {"diff_ids": [diff for _, diff in layers]}}
    return Published("127.0.0.1:5000/torchenv", digest, manifest, config)


def test_the_same_manifest_digest_is_identical() -> None:
    same = image("sha256:m", [("sha256:b1", "sha256:d1")])
    assert repro_against.differences(same, same, "sha256:image", Path("/nonexistent")) == []


def test_a_config_field_and_a_layer_compressed_otherwise_are_named_without_reading_any_layer() -> None:
    theirs = image("sha256:m1", [("sha256:b1", "sha256:d1"), ("sha256:b2", "sha256:d2")], labels={"a": "1"})
    ours = image("sha256:m2", [("sha256:b1", "sha256:d1"), ("sha256:c2", "sha256:d2")], labels={"a": "2"}, level="3")
    lines = repro_against.differences(theirs, ours, "sha256:image", Path("/nonexistent"))
    assert lines[0].startswith("manifest annotations: ")
    assert 'config config.Labels.a: "1" vs "2"' in lines
    assert [line for line in lines if line.startswith("layer ")] == [
        f"layer 2: the same files (diff ID d2), compressed differently: b2 ({ZSTD}) vs c2 ({ZSTD})"
    ]


def test_a_layer_count_that_differs_is_said_first() -> None:
    theirs = image("sha256:m1", [("sha256:b1", "sha256:d1")])
    ours = image("sha256:m2", [("sha256:b1", "sha256:d1"), ("sha256:b2", "sha256:d2")])
    assert repro_against.layer_differences(theirs, ours, "sha256:image", Path("/nonexistent")) == ["layer count differs: 1 vs 2"]


def test_the_rebuild_is_compressed_at_refs_level_or_with_gzip() -> None:
    settings = Settings.load(environ={})
    assert repro_against.level_of(image("sha256:m", [("sha256:b", "sha256:d")], level="12"), settings) == 12
    assert repro_against.level_of(image("sha256:m", [("sha256:b", "sha256:d")], media_type=GZIP), settings) is None
    odd = image("sha256:m", [("sha256:b", "sha256:d")], media_type="application/vnd.oci.image.layer.v1.tar")
    with pytest.raises(TorchenvError, match=r"^127\.0\.0\.1:5000/torchenv@sha256:m has layers torchenv does not push \(application/vnd"):
        repro_against.level_of(odd, settings)


@pytest.mark.parametrize(
    ("reference", "repository"),
    [
        ("ghcr.io/o/torchenv:cu117", "ghcr.io/o/torchenv"),
        ("127.0.0.1:5000/torchenv@sha256:ab", "127.0.0.1:5000/torchenv"),
        ("torchenv", "torchenv"),
    ],
)
def test_a_reference_names_its_repository(reference: str, repository: str) -> None:
    assert repository_of(reference) == repository


def test_a_config_list_that_differs_is_named_by_its_position() -> None:
    theirs = {"config": {"Env": ["PATH=/x", "TORCH_INDEX_URL=a"]}, "rootfs": {"diff_ids": ["sha256:1"]}}
    ours = {"config": {"Env": ["PATH=/x", "TORCH_INDEX_URL=b"]}, "rootfs": {"diff_ids": ["sha256:2"]}}
    assert repro_against.config_differences(theirs, ours) == ['config config.Env.1: "TORCH_INDEX_URL=a" vs "TORCH_INDEX_URL=b"']
