"""Login (POST /token) and per-key usage, under --auth-config."""

import asyncio
import json
from typing import Any, Dict
from urllib.parse import parse_qs

from fastapi import APIRouter, Request

from ...errors import InvalidRequestError, UnauthorizedError

router = APIRouter(tags=["Auth"])

MAX_LOGIN_BODY = 16 * 1024
FAILED_LOGIN_DELAY_S = 0.5


async def _credentials(request: Request) -> Dict[str, Any]:
    """JSON (what xinference-client sends) or an OAuth2 password form."""
    body = await request.body()
    if len(body) > MAX_LOGIN_BODY:
        raise InvalidRequestError("The login body is too large.")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        form = parse_qs(body.decode("utf-8", "replace"))
        return {k: v[0] for k, v in form.items() if v}
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise InvalidRequestError("The login body must be JSON or an OAuth2 password form.") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The login body must be an object with username and password.")
    return data


@router.post("/token", summary="Log in: a bearer token for a username and password (OAuth2 password flow)")
async def login(request: Request):
    auth = request.app.state.auth
    if auth is None:
        raise InvalidRequestError("This server runs without authentication: no login is needed.",
                                  code="auth_disabled")
    creds = await _credentials(request)
    username, password = creds.get("username"), creds.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise InvalidRequestError("username and password are required strings.", param="username")
    if len(username) > 128 or len(password) > 1024:
        raise UnauthorizedError("Incorrect username or password.", code="invalid_credentials")
    try:
        token = auth.login(username, password)
    except UnauthorizedError:
        # a guesser gets a few tries a second per connection, not thousands
        await asyncio.sleep(FAILED_LOGIN_DELAY_S)
        raise
    return {"access_token": token, "token_type": "bearer", "expires_in": auth.expires_in()}


@router.get("/v1/auth/usage", summary="Requests and tokens per API key (and per user's login tokens)")
async def usage(request: Request):
    if request.app.state.auth is None:
        raise InvalidRequestError("This server runs without authentication: usage is counted per key "
                                  "only under --auth-config.", code="auth_disabled")
    return {"object": "list", "data": request.app.state.quotas.usage()}
