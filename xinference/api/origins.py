"""Which browsers may talk to the server: the Host and Origin rules.

A server on 127.0.0.1 is not private to this machine's programs: any web page the
user opens can send it requests. Two rules keep such pages out:

- Host (against DNS rebinding: evil.example re-resolved to 127.0.0.1 makes the
  browser treat the server as evil.example's own). While the server listens on a
  loopback address, a request must be addressed to a loopback name or IP, or to a
  host named in --allowed-origins (a reverse proxy's public name). On any other
  address the operator chose to expose the server, and Host is not checked.
- Origin (against cross-site requests: a page's plain form or `fetch` POST needs no
  CORS preflight, so CORS headers alone would not stop it being processed). A request
  that carries an Origin must come from the server's own origin, a loopback one, or
  one named in --allowed-origins ("*": any).
"""

import ipaddress
import re
from functools import lru_cache
from types import MappingProxyType
from typing import Iterable, Optional, Tuple
from urllib.parse import urlsplit

# what CORSMiddleware's allow_origin_regex takes (it uses fullmatch)
LOOPBACK_ORIGIN_REGEX = (r"https?://(localhost|[a-z0-9.-]+\.localhost|127(\.[0-9]{1,3}){3}|\[::1\])"
                         r"(:[0-9]{1,5})?")
_LOOPBACK_ORIGIN = re.compile(LOOPBACK_ORIGIN_REGEX)
_DEFAULT_PORTS = MappingProxyType({"http": 80, "https": 443, "ws": 80, "wss": 443})


@lru_cache(maxsize=256)  # every request asks, nearly always about the same few names
def is_loopback(host: str) -> bool:
    """localhost (and *.localhost, which browsers resolve to loopback themselves),
    127.0.0.0/8 and ::1; `host` without a port, IPv6 with or without brackets."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> Tuple[str, Optional[int]]:
    """A Host header as (name, port): "[::1]:8080" -> ("::1", 8080); the port is
    None when absent or not a number."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:  # a name, or a bare IPv6 address
        name, port = value, ""
    return name.rstrip("."), int(port) if port.isdigit() else None


def normal_origin(origin: str) -> str:
    """An origin as browsers send it: lower case, no path, no default port."""
    parts = urlsplit(origin.strip().lower())
    if not parts.scheme or not parts.hostname:
        return origin.strip().lower().rstrip("/")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = parts.port
    except ValueError:
        port = None
    keep = port is not None and port != _DEFAULT_PORTS.get(parts.scheme)
    return f"{parts.scheme}://{host}" + (f":{port}" if keep else "")


def _origin_authority(origin: str) -> Optional[Tuple[str, int]]:
    parts = urlsplit(origin)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme, 0)


class OriginPolicy:
    def __init__(self, bind_host: str, allowed_origins: Iterable[str]):
        allowed = [o for o in (s.strip() for s in allowed_origins) if o]
        self.any_origin = "*" in allowed
        self.origins = sorted({normal_origin(o) for o in allowed if o != "*"})
        # "*" lets any page call the server through CORS: a Host check would add nothing
        self.checks_host = is_loopback(bind_host) and not self.any_origin
        self._proxy_names = {urlsplit(o).hostname for o in self.origins} - {None}

    def host_allowed(self, host: Optional[str]) -> bool:
        """Whether a request addressed to `host` (the Host header) may be served. A
        request without one comes from no browser."""
        if not self.checks_host or host is None:
            return True
        name, _ = split_host(host)
        return is_loopback(name) or name in self._proxy_names

    def origin_allowed(self, origin: str, host: Optional[str]) -> bool:
        """Whether a page of `origin` may call the server, reached at `host`."""
        if self.any_origin:
            return True
        origin = normal_origin(origin)
        if _LOOPBACK_ORIGIN.fullmatch(origin) or origin in self.origins:
            return True
        return host is not None and _same_origin(origin, host)


def _same_origin(origin: str, host: str) -> bool:
    """The page was served by this server: the Origin names the host and port that
    the request was addressed to. The scheme is not compared: behind a proxy that
    ends TLS the server sees http while the page was https."""
    authority = _origin_authority(origin)
    if authority is None:
        return False
    name, port = split_host(host)
    if port is None:  # the browser left out its scheme's default port
        port = _DEFAULT_PORTS.get(urlsplit(origin).scheme, 0)
    return authority == (name, port)
