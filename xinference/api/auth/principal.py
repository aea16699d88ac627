"""Who a request comes from: an API key or a login token, resolved to its user."""

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Dict, Optional

import jwt

from ...errors import UnauthorizedError
from .config import AuthConfig, Quota


@dataclass(frozen=True)
class Principal:
    username: str
    permissions: frozenset
    # whose counters (quota, usage) a request moves: one per key, one per user's tokens
    account: str
    # how usage lists the account without revealing a key
    label: str
    quota: Quota


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def mask(key: str) -> str:
    return f"{key[:6]}…{key[-2:]}"


class Authenticator:
    def __init__(self, config: AuthConfig):
        self.config = config
        self._users = config.users()
        # keyed by digest: the lookup time does not depend on how much of a key matches
        self._keys: Dict[str, Principal] = {}
        for user in config.user_config:
            for key in user.keys():
                self._keys[_digest(key.key)] = Principal(
                    user.username, user.granted(), f"key:{_digest(key.key)[:16]}", mask(key.key),
                    Quota(requests_per_minute=key.requests_per_minute, tokens_per_day=key.tokens_per_day))

    def _user_principal(self, username: str) -> Optional[Principal]:
        user = self._users.get(username)
        if user is None:
            return None
        return Principal(user.username, user.granted(), f"user:{user.username}", f"{user.username} (login)",
                         Quota(requests_per_minute=user.requests_per_minute, tokens_per_day=user.tokens_per_day))

    def login(self, username: str, password: str) -> str:
        user = self._users.get(username)
        # compared in constant time, and against something even for an unknown user
        expected = user.password if user is not None else "\0" * len(password)
        ok = hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), password.encode("utf-8", "surrogatepass"))
        if user is None or not ok:
            raise UnauthorizedError("Incorrect username or password.", code="invalid_credentials")
        return self.issue(username)

    def issue(self, username: str) -> str:
        """A signed token for a known user, valid for token_expire_in_minutes."""
        cfg = self.config.auth_config
        now = int(time.time())
        claims = {"sub": username, "iat": now, "exp": now + int(cfg.token_expire_in_minutes * 60),
                  "scopes": sorted(self._users[username].granted())}
        return jwt.encode(claims, cfg.secret_key, algorithm=cfg.algorithm)

    def expires_in(self) -> int:
        return int(self.config.auth_config.token_expire_in_minutes * 60)

    def principal(self, authorization: Optional[str]) -> Principal:
        """The caller behind an `Authorization: Bearer ...` header; 401 if none or unknown."""
        if not authorization:
            raise UnauthorizedError("Authentication required: send `Authorization: Bearer <api key or token>`.",
                                    code="missing_credentials")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise UnauthorizedError("The Authorization header must be `Bearer <api key or token>`.",
                                    code="invalid_credentials")
        found = self._keys.get(_digest(credential))
        if found is not None:
            return found
        cfg = self.config.auth_config
        try:
            claims = jwt.decode(credential, cfg.secret_key, algorithms=[cfg.algorithm],
                                options={"require": ["sub", "exp"]})
        except jwt.ExpiredSignatureError:
            raise UnauthorizedError("The token has expired; log in again.", code="token_expired") from None
        except jwt.PyJWTError:
            raise UnauthorizedError("Invalid API key or token.", code="invalid_credentials") from None
        # permissions come from the current config, not the token: a user removed or
        # narrowed there loses access at once
        user = self._user_principal(str(claims["sub"]))
        if user is None:
            raise UnauthorizedError("The token's user no longer exists.", code="invalid_credentials")
        return user
