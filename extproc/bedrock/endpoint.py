"""Where Bedrock traffic goes, and how Envoy is told.

Envoy's bootstrap is the same file everywhere, so it cannot hold the region's
host or an endpoint override. Instead the extproc sets ``:authority`` to the
upstream host and a routing header naming one of two dynamic-forward-proxy
clusters in ``envoy/envoy.yaml``: ``tls`` (real Bedrock, or an https
override such as a VPC endpoint) or ``plain`` (an ``http://`` override, the
local emulator). A client cannot choose an upstream by sending these headers
itself: the extproc overwrites both on every request it forwards and answers
every other request itself, and Envoy fails closed without the extproc.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

ROUTING_HEADER = "x-gateway-upstream"


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str
    authority: str
    """``host[:port]`` exactly as sent in ``:authority`` and signed as ``host``."""

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        default_port = 443 if parts.scheme == "https" else 80
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        authority = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
        return cls(scheme=parts.scheme, authority=authority)

    @property
    def routing(self) -> str:
        """Value of the routing header: which Envoy cluster carries the request."""
        return "tls" if self.scheme == "https" else "plain"

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.authority}{path}"
