"""Where a variant's wheels come from, and whether that place answers."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from torchenv.errors import TorchenvError
from torchenv.model.matrix import Variant
from torchenv.model.settings import Settings

# PEP 691: an index that speaks JSON lists each file with its hashes and (PEP 700) size.
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def pypi_simple_url() -> str:
    """pip's own default index, so torchenv never names a registry itself."""
    from pip._internal.models.index import PyPI

    return PyPI.simple_url.rstrip("/")


def index_url(variant: Variant, settings: Settings) -> str | None:
    """The index pip installs the variant from; None means pip's default (PyPI)."""
    channel = variant.pytorch_channel
    if channel is None:
        return None
    if not settings.pytorch_index:
        raise TorchenvError(
            f"variant {variant.name}: its wheels come only from the PyTorch {channel} index, which could not be reached: "
            "no index is configured; set TORCHENV_PYTORCH_INDEX to the PyTorch wheel index or a mirror of it "
            f"(it must serve <URL>/{channel}/torch/), see README 'Wheel sources'"
        )
    return f"{settings.pytorch_index.rstrip('/')}/{channel}"


def source_description(variant: Variant) -> str:
    return "PyPI" if variant.pytorch_channel is None else f"the PyTorch {variant.pytorch_channel} index"


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Trusts the configured CA bundle (a TLS-inspecting proxy's), or the system's."""
    ca_bundle = settings.ca_bundle_path()
    return ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)


def fetch_project(index: str, project: str, settings: Settings, timeout: float = 15) -> bytes:
    """The index's page for PROJECT (JSON where the index offers it)."""
    request = urllib.request.Request(f"{index}/{project}/", headers={"Accept": f"{SIMPLE_JSON}, text/html;q=0.1"})
    with urllib.request.urlopen(request, timeout=timeout, context=ssl_context(settings)) as response:
        return response.read()


def require_reachable(variant: Variant, settings: Settings, timeout: float = 15) -> None:
    """Fails in one line when the variant's wheel source (PyPI or a PyTorch index) does not answer."""
    index = index_url(variant, settings) or pypi_simple_url()
    try:
        with urllib.request.urlopen(f"{index}/torch/", timeout=timeout, context=ssl_context(settings)) as response:
            response.read(1024)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        fix = (
            "check the network (a proxy or the CA bundle: TORCHENV_CA_BUNDLE) and retry"
            if variant.pytorch_channel is None
            else "point TORCHENV_PYTORCH_INDEX at a reachable mirror of the PyTorch wheel index and retry"
        )
        raise TorchenvError(
            f"variant {variant.name}: {source_description(variant)} could not be reached at {index}/torch/ ({reason}); {fix}"
        ) from None


def file_sizes(index: str, project: str, settings: Settings) -> dict[str, tuple[str, int]]:
    """sha256 -> (file name, size) of a project's files, where the index says (else empty)."""
    try:
        page: dict[str, Any] = json.loads(fetch_project(index, project, settings))
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    sizes = {}
    for entry in page.get("files", []):
        digest, size = entry.get("hashes", {}).get("sha256"), entry.get("size")
        if digest and isinstance(size, int):
            sizes[digest] = (entry.get("filename", ""), size)
    return sizes
