"""Where a variant's wheels come from, and whether that place answers."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote, urlsplit

from torchenv.errors import TorchenvError
from torchenv.model.addresses import is_loopback_host
from torchenv.model.matrix import Variant
from torchenv.model.settings import Settings

# PEP 691: an index that speaks JSON lists each file with its hashes and (PEP 700) size.
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def pypi_simple_url() -> str:
    """pip's own default index, so torchenv never names a registry itself."""
    from pip._internal.models.index import PyPI

    return PyPI.simple_url.rstrip("/")


def index_url(variant: Variant, settings: Settings) -> str | None:
    """The index the variant's torch, torchvision and torchaudio come from; None means
    PyPI. In a locked build everything else comes from PyPI, so a mirror needs to serve
    only those three."""
    channel = variant.pytorch_channel
    if channel is None:
        return None
    if not settings.pytorch_index:
        raise TorchenvError(
            f"variant {variant.name}: the setting pytorch_index is empty; remove it (from invoke.yaml) to use the PyTorch "
            f"wheel index, or set it to a mirror of it (one that serves <URL>/{channel}/torch/)"
        )
    return f"{settings.pytorch_index.rstrip('/')}/{channel}"


def without_credentials(url: str) -> str:
    """URL without a user and password (a private mirror's): what logs, errors and the
    image's build arguments may show."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return parts._replace(netloc=netloc + (f":{parts.port}" if parts.port else "")).geturl()


def netrc_entry(url: str) -> str | None:
    """A netrc line with URL's credentials, which installers read from a secret file
    instead of the URL; None when it has none."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    return f"machine {parts.hostname} login {unquote(parts.username)} password {unquote(parts.password or '')}\n"


def is_loopback(url: str) -> bool:
    """True for an index on this machine's loopback (a local mirror): a build reaches it
    only over the host's network."""
    return is_loopback_host(urlsplit(url).hostname or "")


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
            else "check the network (a proxy or the CA bundle: TORCHENV_CA_BUNDLE), or point TORCHENV_PYTORCH_INDEX "
            "at a reachable mirror of the PyTorch wheel index, and retry"
        )
        raise TorchenvError(
            f"variant {variant.name}: {source_description(variant)} could not be reached at "
            f"{without_credentials(index)}/torch/ ({reason}); {fix}"
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
