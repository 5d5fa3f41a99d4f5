"""The publishing bench's tables and verdicts, from made-up trials (the bench itself runs
for half an hour against two engines; its arithmetic should not fail at the end)."""

import json
from pathlib import Path
from typing import Any

import pytest

from bench import extraction, publishing, pull_ready, uncompressed_push
from torchenv import engine

from .fake_engine import FakeEngine
from .zstd_images import Image, layer, sha256


def trial(ready: float, bound: str = "CPU") -> dict[str, Any]:
    return {"pulled": ready - 2, "ready": ready, "image_bytes": 4_000_000_000, "bound": bound}


def test_the_push_table_gives_each_row_as_ratios_of_the_naive_gzip_median() -> None:
    rows = {
        "cores": 2,
        "naive gzip": [{"seconds": 200.0, "bytes": 2.5e9}, {"seconds": 190.0, "bytes": 2.5e9}],
        "zstd 9 x2": {"seconds": 97.5, "bytes": 1.7e9},
    }
    table = publishing.push_table(rows)
    assert "| naive, `docker push` (gzip), median of 2 | 2.50 | 1.00 | 195 | 1.00 |" in table
    assert "| torchenv, zstd 9 x2 | 1.70 | 0.68 | 98 | 0.50 |" in table


def test_the_pull_table_has_the_median_ratio_each_pairs_ratio_and_the_floor() -> None:
    results = {
        "configuration": {"engine": "26.1.5", "storage_driver": "overlay2"},
        "trials": {"torchenv": [trial(40), trial(30), trial(36)], "naive": [trial(80), trial(70), trial(60)]},
        "floor": {"write_bytes_per_s": 400e6, "image_bytes": 4e9, "decode_s_one_core": 5.0, "seconds": 15.0},
    }
    table = pull_ready.table(results)
    assert "| classic store: torchenv | 36.0 | 30.0-40.0 | CPU |" in table
    assert "| classic store: ratio (median of ready) | 0.51 | per pair: 0.50, 0.43, 0.60 | 2 of 3 pairs <= 0.5 |" in table
    assert "= 10.0 s, plus zstd's decode on one core 5.0 s = 15.0 s." in table
    assert "Engine: engine 26.1.5, storage_driver overlay2" in table


def pulled(ready: float, layers: dict[str, dict[str, float]]) -> dict[str, Any]:
    return trial(ready) | {"layers": layers}


def test_the_engine_floor_sets_the_same_image_uncompressed_against_the_zstd_pull_and_the_naive() -> None:
    base, nvidia = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    results = {
        "configuration": {"engine": "26.1.5"},
        "trials": {"torchenv": [trial(32), trial(33)], "naive": [trial(55), trial(56)]},
        "engine_floor": {
            "torchenv": [trial(32), trial(34)],
            "uncompressed": [
                pulled(33, {"a" * 12: {"Extracting": 0.5, "Pull complete": 5.5}, "b" * 12: {"Extracting": 5.5, "Pull complete": 15.0}}),
                pulled(32, {"a" * 12: {"Extracting": 0.5, "Pull complete": 4.5}, "b" * 12: {"Extracting": 4.5, "Pull complete": 14.5}}),
            ],
            "layers": [
                {"diff_id": base, "bytes": 316_000_000, "entries": 10_494},
                {"diff_id": "sha256:" + "c" * 64, "bytes": 1_500, "entries": 6},
                {"diff_id": nvidia, "bytes": 2_580_000_000, "entries": 2_219},
            ],
        },
        "floor": {"write_bytes_per_s": 1e9, "image_bytes": 4.46e9, "decode_s_one_core": 9.1, "seconds": 13.5},
    }
    table = pull_ready.table(results)
    assert "| classic store: torchenv, layers uncompressed (nothing to decode) | 32.5 | 32.0-33.0 | CPU |" in table
    assert "| classic store: zstd / uncompressed (median of ready, 2 ABBA pairs) | 1.02 | per pair: 0.97, 1.06 | |" in table
    assert "| classic store: uncompressed / naive (median of ready) | 0.59 | | |" in table
    # Per layer of a megabyte or more, bottom first, matched to the pull's events by diff ID.
    assert "(extracting to pull complete, median): 0.32 GB in 10.5k entries: 4.5 s; 2.58 GB in 2.2k entries: 9.8 s." in table


def test_a_floor_that_could_not_be_pushed_says_why_in_the_table() -> None:
    results = {
        "configuration": {"engine": "24.0.7"},
        "trials": {"torchenv": [trial(32)], "naive": [trial(55)]},
        "engine_floor": {"unavailable": "the engine's `docker save` does not name layer sha256:0123 by its digest"},
        "floor": {"write_bytes_per_s": 1e9, "image_bytes": 4.46e9, "decode_s_one_core": None, "seconds": 4.46},
    }
    assert "| the engine's floor: left out (the engine's `docker save` does not name" in pull_ready.table(results)


def test_a_host_without_a_second_engine_says_so_in_the_table() -> None:
    assert pull_ready.table({"unavailable": "not root"}) == "(pull-to-ready left out: not root)"


def test_a_trial_is_called_cpu_bound_when_both_cores_were_busy() -> None:
    sampler = pull_ready.Sampler()
    sampler.samples = [(0.0, [0, 0, 0, 0, 0, 0, 0], 0), (1.0, [90, 0, 5, 5, 0, 0, 0], 10)]
    assert sampler.summary() == {"cpu_busy": 0.95, "iowait": 0.0, "written_bytes": 10240, "bound": "CPU (every core)"}
    sampler.samples = [(0.0, [0, 0, 0, 0, 0, 0, 0], 0), (1.0, [30, 0, 10, 20, 40, 0, 0], 0)]
    assert sampler.summary()["bound"] == "disk"


def test_a_containerd_only_run_keeps_the_classic_rows_with_their_own_engine_and_date() -> None:
    earlier = {
        "configuration": {"engine": "26.1.5", "kernel": "old"},
        "trials": {"torchenv": [trial(56)], "naive": [trial(99)]},
        "floor": {"write_bytes_per_s": 1e9, "image_bytes": 4.46e9, "decode_s_one_core": 9.1, "seconds": 13.5},
    }
    fresh = {
        "configuration": {"engine": "26.1.5", "kernel": "new"},
        "trials": {"torchenv": [], "naive": []},
        "containerd_store": {"torchenv": [trial(43)], "naive": [trial(90)]},
        "floor": {"write_bytes_per_s": 1e9, "image_bytes": 0, "decode_s_one_core": 9.0, "seconds": 9.0},
    }
    merged = publishing.with_earlier_classic_rows(fresh, earlier, "2026-12-02 16:14 UTC")
    assert merged["trials"] == earlier["trials"] and merged["floor"] == earlier["floor"]
    assert merged["containerd_store"] == fresh["containerd_store"] and merged["configuration"]["kernel"] == "new"
    table = pull_ready.table(merged)
    assert "| classic store: ratio (median of ready) | 0.57 |" in table
    assert "| containerd store: ratio (median of ready) | 0.48 |" in table
    assert "measured earlier (2026-12-02 16:14 UTC), on: engine 26.1.5, kernel old" in table
    # A second containerd-only run keeps the first date and engine, not its own.
    again = publishing.with_earlier_classic_rows(fresh, merged | {"configuration": {"kernel": "newer"}}, "later")
    assert again["classic"] == merged["classic"]
    # The engine's floor of the earlier run stays beside its classic rows when none was measured now.
    assert "engine_floor" not in merged
    floored = publishing.with_earlier_classic_rows(fresh, earlier | {"engine_floor": {"torchenv": [trial(32)]}}, None)
    assert floored["engine_floor"] == {"torchenv": [trial(32)]}
    # ... and over a floor this run could not measure: it belongs with the earlier naive trials.
    refused = fresh | {"engine_floor": {"unavailable": "skopeo refused"}}
    assert publishing.with_earlier_classic_rows(refused, earlier | {"engine_floor": {"torchenv": [trial(32)]}}, None)["engine_floor"] == {
        "torchenv": [trial(32)]
    }
    # Nothing earlier to keep: the fresh result as it is.
    assert publishing.with_earlier_classic_rows(fresh, {}, None) is fresh


def test_the_extraction_table_sets_the_load_against_the_pull() -> None:
    pull = {"layers": {"61953c4c6ede0000": {"Extracting": 10.0, "Pull complete": 24.5}, "91be25d2826c0000": {"Downloading": 0.1}}}
    assert extraction.extraction_seconds(pull) == {"61953c4c6ede": 14.5}
    results = {
        "variant": "cu117",
        "zstd_level": 9,
        "configuration": {"engine": "26.1.5", "storage_driver": "overlay2"},
        "rounds": [{"load": {"loaded": 40.0}, "pull": {"pulled": 32.0}}, {"load": {"loaded": 38.0}, "pull": {"pulled": 34.0}}],
    }
    table = extraction.table(results)
    assert "| `docker load` (uncompressed archive) | 39.0 | 38.0-40.0 |" in table
    assert "| pull, zstd 9 from 127.0.0.1 | 33.0 | 32.0-34.0 |" in table
    assert "| ratio load / pull | 1.18 | |" in table


def test_the_report_dates_each_table_where_they_were_measured_apart() -> None:
    assert publishing.dates("2026-12-06 14:45 UTC", "2026-12-06 14:45 UTC") == "2026-12-06 14:45 UTC"
    assert (
        publishing.dates("2026-12-06 14:45 UTC", "2026-12-06 13:34 UTC")
        == "the push rows 2026-12-06 14:45 UTC, the pull-to-ready rows 2026-12-06 13:34 UTC"
    )
    assert publishing.dates(None, "2026-12-06 13:34 UTC") == "2026-12-06 13:34 UTC"


def test_the_uncompressed_layout_keeps_each_layer_as_the_engine_saved_it_and_counts_its_entries(tmp_path: Path) -> None:
    image = Image([layer({"etc/os-release": b"Debian\n", "etc/hostname": b""}), layer({"opt/venv/big.so": b"x" * 5000})])
    docker = FakeEngine()
    docker.images[image.id] = image.facts()
    docker.archives[image.id] = image.archive()
    with engine.use(docker):
        layers = uncompressed_push.write_layout(image.id, tmp_path / "layout")
    assert [(facts.diff_id, facts.entries) for facts in layers] == [(image.diff_ids[0], 2), (image.diff_ids[1], 1)]
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    assert manifest["config"]["digest"] == image.id and (blobs / image.id[7:]).read_bytes() == image.config
    for entry, body in zip(manifest["layers"], image.layers, strict=True):
        assert entry == {"mediaType": uncompressed_push.LAYER_MEDIA_TYPE, "digest": sha256(body), "size": len(body)}
        assert (blobs / entry["digest"][7:]).read_bytes() == body


def test_an_engine_that_saves_layers_under_other_names_gets_no_floor_and_a_reason(tmp_path: Path) -> None:
    image = Image([layer({"etc/os-release": b"Debian\n"})])
    docker = FakeEngine()
    docker.images[image.id] = image.facts()
    docker.archives[image.id] = image.archive(legacy=True)
    with engine.use(docker), pytest.raises(uncompressed_push.NotPushed, match=r"does not name layer sha256:.* by its digest"):
        uncompressed_push.push(image.id, "127.0.0.1:5000/bench:uncompressed", tmp_path)
    assert not (tmp_path / "uncompressed-layout").exists()
