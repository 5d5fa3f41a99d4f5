"""Where a variant's wheels come from, and whether that place answers."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

from torchenv.errors import TorchenvError
from torchenv.matrix import Variant
from torchenv.settings import Settings


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


def require_reachable(variant: Variant, settings: Settings, timeout: float = 15) -> None:
    """Fails in one line when the variant's PyTorch index does not answer."""
    url = index_url(variant, settings)
    if url is None:
        return
    ca_bundle = settings.ca_bundle_path()
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    probe = f"{url}/torch/"
    try:
        with urllib.request.urlopen(probe, timeout=timeout, context=context) as response:
            response.read(1024)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise TorchenvError(
            f"variant {variant.name}: the PyTorch {variant.pytorch_channel} index could not be reached at {probe} ({reason}); "
            "point TORCHENV_PYTORCH_INDEX at a reachable mirror of the PyTorch wheel index and retry"
        ) from None
