"""What a host name says about where it is."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """True for this machine's loopback (localhost, 127.0.0.0/8, ::1): a registry or index
    there speaks plain HTTP, and a build step reaches it only over the host's network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
