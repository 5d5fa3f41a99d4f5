from torchenv.engine.docker_engine import STEP_PREFIX
from torchenv.pipeline.buildlog import failure_reason

UV_OUTPUT = """#12 0.31 Resolved 21 packages in 40ms
#12 1.20 error: Failed to download `idna==3.20`
#12 1.20   Caused by: Hash mismatch for `idna==3.20`
#12 1.20
#12 1.20 Expected:
#12 1.20   sha256:0000000000000000000000000000000000000000000000000000000000000000
#12 1.20
#12 1.20 Computed:
#12 1.20   sha256:ab7ae7122974553370f0bdb919e1a960b2cd1bc1ef0276416d896db81c14582c
#12 ERROR: process "/bin/sh -c sh /srv/install.sh torch" did not complete successfully: exit code: 1"""


def test_uv_hash_mismatch_is_one_line_naming_the_package_and_both_hashes() -> None:
    lines = [STEP_PREFIX.sub("", line) for line in UV_OUTPUT.splitlines()]
    assert failure_reason(lines) == (
        "idna==3.20 does not match its hash in the lock (expected sha256 0000000000000000..., downloaded ab7ae71229745533...)"
    )


def test_a_torchenv_error_wins_and_unknown_output_gives_nothing() -> None:
    assert failure_reason(["torchenv: error: variant cu117: a CPU-only torch", "Hash mismatch for `x==1`"]) == (
        "variant cu117: a CPU-only torch"
    )
    assert failure_reason(["something else broke"]) is None


def test_a_full_disk_is_named_with_what_to_do() -> None:
    lines = ["#12 41.3 error: failed to write to file `/opt/venv/lib/libcublasLt.so.11`: No space left on device (os error 28)"]
    reason = failure_reason(lines)
    assert reason is not None and "no space left on device" in reason and "invoke clean" in reason
