import pytest

from torchenv.errors import TorchenvError
from torchenv.pipeline.zstd_push import host_and_port, is_local, require_reachable


@pytest.mark.parametrize(
    ("registry", "expected", "local"),
    [
        ("ghcr.io/owner", ("ghcr.io", None), False),
        ("registry.example:5000/team/sub", ("registry.example", 5000), False),
        ("127.0.0.1:5000", ("127.0.0.1", 5000), True),
        ("localhost:5000", ("localhost", 5000), True),
        ("[::1]:5000", ("::1", 5000), True),
    ],
)
def test_a_registry_names_its_host_port_and_whether_it_is_local(registry: str, expected: tuple[str, int | None], local: bool) -> None:
    assert host_and_port(registry) == expected
    assert is_local(registry) is local


def test_nothing_listening_fails_in_one_line_before_any_save() -> None:
    with pytest.raises(TorchenvError, match=r"^pushing 127\.0\.0\.1:1/torchenv:x failed: cannot connect to 127\.0\.0\.1:1 \(") as caught:
        require_reachable("127.0.0.1:1", "127.0.0.1:1/torchenv:x")
    assert "\n" not in str(caught.value)
