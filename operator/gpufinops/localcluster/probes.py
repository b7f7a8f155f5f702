"""Readiness probes: small HTTP(S) GETs against health endpoints on loopback."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path


def http_ok(
    url: str,
    *,
    token: str | None = None,
    ca_cert: Path | None = None,
    verify: bool = True,
    timeout: float = 2.0,
) -> bool:
    """True when ``url`` answers 200; False on any error or other status."""
    return http_get(url, token=token, ca_cert=ca_cert, verify=verify, timeout=timeout) is not None


def http_get(
    url: str,
    *,
    token: str | None = None,
    ca_cert: Path | None = None,
    verify: bool = True,
    timeout: float = 2.0,
) -> bytes | None:
    """The body of a 200 answer to a GET of ``url``, or None."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    context: ssl.SSLContext | None = None
    if url.startswith("https://"):
        if verify:
            context = ssl.create_default_context(cafile=str(ca_cert) if ca_cert else None)
        else:
            # Components that serve a self-signed certificate of their own making
            # (controller-manager, scheduler) only expose health here.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    # No proxy: everything we probe listens on loopback.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            body: bytes = response.read()
            return body if response.status == 200 else None
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return None
