"""Checks every request's credentials and permission before the app sees it (before
its body is read), so an unauthenticated caller learns nothing from validation errors."""

from typing import Any, List, Optional

from starlette.datastructures import Headers
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from ...errors import PermissionDeniedError, XinferenceError
from .. import context
from ..errors import error_response, is_ollama_path
from .permissions import METERED, PUBLIC, needed
from .principal import Authenticator
from .quotas import Quotas


def flat_routes(app: Any) -> List[Any]:
    """Every route and mount of the app, with included routers opened up (FastAPI
    0.165 keeps an included router as one entry that matches without saying which
    of its routes did)."""
    out: List[Any] = []

    def walk(routes: Any) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes)
            else:
                out.append(route)

    walk(app.router.routes)
    return out


class AuthMiddleware:
    def __init__(self, app: ASGIApp, owner: Any, auth: Authenticator, quotas: Quotas):
        self.app = app
        self.owner = owner  # the FastAPI app, whose routes say which permission applies
        # the flattened routes, and the top-level count they were built from: routes are
        # added after the app is made (the web UI's mount, the redirect of /)
        self._routes: List[Any] = []
        self._built_from = -1
        self.auth = auth
        self.quotas = quotas

    def _route(self, scope: Scope) -> "tuple[Optional[str], bool]":
        """The matched route's path template (None: no route) and whether it is a
        mount (the web UI, which has its own login)."""
        if len(self.owner.router.routes) != self._built_from:
            self._built_from = len(self.owner.router.routes)
            self._routes = flat_routes(self.owner)
        for route in self._routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", None), isinstance(route, Mount)
        # no route, or a known path with the wrong method: any authenticated caller
        # may learn that it is a 404 or a 405
        return None, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        template, mount = self._route(scope)
        need = PUBLIC if mount else needed(scope["method"], template)
        if need == PUBLIC:
            await self.app(scope, receive, send)
            return
        try:
            principal = self.auth.principal(Headers(scope=scope).get("authorization"))
            if need != "authenticated" and need not in principal.permissions:
                raise PermissionDeniedError(
                    f"This key or user lacks the permission {need!r} that "
                    f"{scope['method']} {template} needs.", code="permission_denied")
            if (scope["method"], template) in METERED:
                self.quotas.admit(principal)
        except XinferenceError as e:
            response = error_response(e, is_ollama_path(scope))
            if e.status_code == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        token = context.principal.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            context.principal.reset(token)
