"""What the REST server is told at start: where it listens, who may call it and from
which origins. Built by the composition root (xinference.deploy) from CLI flags."""

from dataclasses import dataclass
from typing import Any, Optional, Tuple


@dataclass(frozen=True)
class ServerSettings:
    # the address uvicorn binds; a loopback address turns the Host check on
    host: str = "127.0.0.1"
    port: int = 9997
    # browser origins allowed besides the server's own and loopback ones (--allowed-origins);
    # "*" allows every origin
    allowed_origins: Tuple[str, ...] = ()
    # the parsed --auth-config (xinference.api.auth.config.AuthConfig); None: no authentication
    auth: Optional[Any] = None
