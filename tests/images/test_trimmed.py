"""What the build trims from the venv is really gone, and provably was unused: the big
libraries carry no symbol table, the libraries it removed are named by no file left in
the image, the dependencies' test suites are gone, and the NVIDIA libraries are a layer
of their own."""

from __future__ import annotations

import pytest

from torchenv import engine
from torchenv.model.matrix import Variant

from .conftest import TrackedContainer


def site(variant: Variant) -> str:
    return f"/opt/venv/lib/python{variant.python}/site-packages"


REMOVED = ("libcusolverMg", "libcufftw", "libnvblas")


def test_the_biggest_libraries_have_no_symbol_table(container: TrackedContainer, variant: Variant) -> None:
    site_dir = site(variant)
    # readelf comes with the compilers the image keeps for torch.compile.
    listing = container.host.run(
        f"for f in {site_dir}/torch/lib/libtorch*.so {site_dir}/triton/_C/libtriton.so {site_dir}/nvidia/nccl/lib/libnccl.so.*; do "
        'if [ -f "$f" ]; then printf "%s " "$f"; readelf -S "$f" | grep -c " \\.symtab" || true; fi; done'
    )
    assert listing.rc == 0, listing.stderr
    counts = dict(line.rsplit(" ", 1) for line in listing.stdout.strip().splitlines())
    assert any(path.endswith("libtorch_cpu.so") for path in counts), counts
    assert set(counts.values()) == {"0"}, counts


def test_removed_libraries_are_gone_and_nothing_names_them(container: TrackedContainer, variant: Variant) -> None:
    """The proof that they were unused: no library, extension or module in the venv
    links against them or opens them by name."""
    site_dir = site(variant)
    found = container.host.run(f"find {site_dir} -name 'libcusolverMg*' -o -name 'libcufftw*' -o -name 'libnvblas*'")
    assert found.rc == 0 and found.stdout.strip() == "", found.stdout
    pattern = " ".join(f"-e {name}" for name in REMOVED)
    names = container.host.run(f"grep -rlsF {pattern} --include='*.so*' --include='*.py' {site_dir}")
    assert names.rc == 1 and names.stdout.strip() == "", names.stdout  # grep: 1 = no match


def test_dependency_test_suites_are_gone_but_torch_testing_stays(container: TrackedContainer, variant: Variant) -> None:
    site_dir = site(variant)
    suites = container.host.run(f"find {site_dir} -mindepth 2 -type d -name tests")
    assert suites.rc == 0 and suites.stdout.strip() == "", suites.stdout
    assert container.python("import torch.testing; torch.testing.assert_close(1.0, 1.0); print(2 + 2)") == "4"


@pytest.mark.variant_image
def test_the_nvidia_libraries_are_a_layer_of_their_own(image: str, variant: Variant) -> None:
    steps = engine.get().history(image)
    installs = [size for created, size in steps if "install.sh" in created]
    assert len(installs) == 2, steps
    torch_layer, nvidia_layer = installs  # history lists the newest first
    if not variant.is_cuda:
        # The first layer holds only the venv itself (python3 -m venv: pip), no libraries.
        assert nvidia_layer < 50_000_000, installs
    else:
        assert nvidia_layer > 1_000_000_000 and torch_layer > 500_000_000, installs
