"""Limits of the torch release inside the image that checks must know about."""

from __future__ import annotations

import sys


def compile_unsupported() -> str | None:
    """Why torch.compile cannot work with this torch and Python, or None when it can.

    torch 2.0.x's dynamo refuses Python 3.11 outright; torch 2.1 added 3.11 support.
    """
    import torch

    release = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if release < (2, 1) and sys.version_info >= (3, 11):
        python = "{}.{}".format(*sys.version_info[:2])
        return f"torch {torch.__version__} does not support torch.compile on Python {python} (torch 2.1 does; a Python 3.10 base does)"
    return None
