"""Who may talk to the server: checked on every request before any route runs.

The page has no login, so the server trusts only this computer. Two ways a website the
photographer visits could still reach it are closed here:

- **DNS rebinding**: a page on ``attacker.example`` whose name is made to resolve to 127.0.0.1
  talks to us as "same origin". Its requests carry ``Host: attacker.example``, so only loopback
  names (``localhost``, 127.0.0.0/8, ``[::1]``, any port) and the ``--host`` the server was
  started with are answered (421 otherwise). A wildcard ``--host`` (0.0.0.0, ::) also accepts any
  IP-address Host: rebinding needs a domain name, never an address.
- **Cross-site requests**: a multipart POST needs no CORS preflight, so any page could queue
  jobs. A request whose ``Origin`` is not this server's own is refused (403), on every route;
  so is one the browser marks ``Sec-Fetch-Site: cross-site`` on a state-changing route or a
  result (``/api/jobs/...``).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from gmodiff.errors import printable
from gmodiff.serve.config import ServeConfig

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
RESULT_PREFIX = "/api/jobs/"


def split_host(value: str) -> tuple[str, int | None] | None:
    """``127.0.0.1:7860`` → ``("127.0.0.1", 7860)``, ``[::1]`` → ``("::1", None)``; None when
    the value is not a host name with an optional port."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] if rest else None
    else:
        name, sep, port = value.partition(":")
        if sep and ":" in port:  # a bare IPv6 address: not a valid Host
            return None
        port = port if sep else None
    if not name:
        return None
    if port is not None:
        if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            return None
        return name, int(port)
    return name, None


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def host_allowed(name: str, config: ServeConfig) -> bool:
    """Whether ``name`` (a Host without its port) is one of this server's own names."""
    ip = _ip(name)
    if name == "localhost" or (ip is not None and ip.is_loopback):
        return True
    own = config.host.strip().lower().strip("[]")
    if own in WILDCARD_HOSTS:
        return ip is not None
    return name == own


def _origin(value: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin header, or None for ``null`` or a malformed one."""
    try:
        parts = urlsplit(value.strip())
        scheme, name, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        return None
    if scheme not in ("http", "https") or not name or parts.path or parts.query:
        return None
    return scheme, name.lower(), port if port is not None else (443 if scheme == "https" else 80)


def refusal(config: ServeConfig, method: str, path: str, headers: Headers) -> tuple[int, str] | None:
    """(HTTP status, one-line error) when this request must be refused, else None."""
    page = f"http://127.0.0.1:{config.port}/"
    host = split_host(headers.get("host", ""))
    if host is None or not host_allowed(host[0], config):
        shown = printable(headers.get("host", ""))[:100]
        return 421, (f"error: Host {shown!r} is not this computer — open {page} (the server "
                     "answers only its loopback names, so other websites cannot reach it)")
    origin = headers.get("origin")
    if origin is not None:
        parsed = _origin(origin)
        own_ports = {config.port, host[1] or 80}
        if parsed is None or parsed[0] != "http" or not host_allowed(parsed[1], config) \
                or parsed[2] not in own_ports:
            shown = printable(origin)[:100]
            return 403, (f"error: request from another website ({shown!r}) refused — use the "
                         f"page at {page} itself")
    if headers.get("sec-fetch-site") == "cross-site" and (
            method not in SAFE_METHODS or path.startswith(RESULT_PREFIX)):
        return 403, (f"error: request from another website refused — use the page at {page} "
                     "itself")
    return None


class RequestGuard:
    """ASGI middleware: answers :func:`refusal`'s one line instead of running the route."""

    def __init__(self, app, config: ServeConfig):
        self.app = app
        self.config = config

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            refused = refusal(self.config, scope["method"], scope["path"], Headers(scope=scope))
            if refused is not None:
                status, line = refused
                await JSONResponse({"error": line}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)
