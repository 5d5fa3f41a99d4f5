"""Property: whatever a matrix file holds, loading it ends in a valid matrix or in one
TorchenvError line, never in another exception."""

from __future__ import annotations

import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchenv.errors import TorchenvError
from torchenv.model.matrix import DEFAULT_MATRIX, load_matrix

from .conftest import to_toml

SHIPPED = DEFAULT_MATRIX.read_text()
KEYS = ["torch", "torchvision", "torchaudio", "python", "cuda", "wheel_source", "base", "allow_unpinned_base", "colour", "default_variant"]
scalars = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["2.0.1", "2.1.2", "2.0.1+cu118", "12.1", "11.7", "none", "3.11", "3.7", "pypi", "pytorch-cpu", "mmdebstrap:sid"]),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


def assert_loads_or_one_line(path: Path) -> None:
    try:
        load_matrix(path)
    except TorchenvError as error:
        assert "\n" not in str(error) and str(error)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_random_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    assert_loads_or_one_line(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(SHIPPED)), junk=st.text(max_size=20))
def test_shipped_file_cut_and_spliced(tmp_path: Path, cut: int, junk: str) -> None:
    path = tmp_path / "matrix.toml"
    path.write_text(SHIPPED[:cut] + junk + SHIPPED[cut:])
    assert_loads_or_one_line(path)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variant=st.sampled_from(["cpu", "cu117", "cu118", "cu121", "defaults"]), key=st.sampled_from(KEYS), value=scalars)
def test_one_value_replaced(tmp_path: Path, variant: str, key: str, value: object) -> None:
    data = tomllib.loads(SHIPPED)
    table = data["defaults"] if variant == "defaults" else data["variants"][variant]
    table[key] = value
    path = tmp_path / "matrix.toml"
    path.write_text(to_toml(data))
    assert_loads_or_one_line(path)
