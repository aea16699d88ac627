"""The `--auth-config` file, in Xinference's format, plus optional per-key quotas.

    {"auth_config": {"algorithm": "HS256", "secret_key": "...", "token_expire_in_minutes": 30},
     "user_config": [{"username": "...", "password": "...", "permissions": ["admin"],
                      "api_keys": ["sk-...", {"key": "sk-...", "requests_per_minute": 60}],
                      "requests_per_minute": 600, "tokens_per_day": 1000000}]}

A user's quota applies to its login tokens and to each of its keys that sets none of
its own; each key (and each user's tokens together) has its own counters.
"""

import json
from types import MappingProxyType
from typing import Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Xinference's names; `models:write` is its newer name for start + stop.
PERMISSIONS = ("admin", "models:list", "models:read", "models:start", "models:stop", "models:register",
               "models:unregister", "cache:list", "cache:delete", "monitor:view")
ALIASES = MappingProxyType({"models:write": ("models:start", "models:stop")})


class Quota(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_per_minute: Optional[int] = Field(default=None, ge=1)
    tokens_per_day: Optional[int] = Field(default=None, ge=1)


class APIKey(Quota):
    key: str = Field(min_length=8, max_length=256)


class UserConfig(Quota):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    permissions: List[str] = Field(default_factory=list)
    api_keys: List[Union[str, APIKey]] = Field(default_factory=list)

    @field_validator("permissions")
    @classmethod
    def _known(cls, v: List[str]) -> List[str]:
        unknown = [p for p in v if p not in PERMISSIONS and p not in ALIASES]
        if unknown:
            raise ValueError(f"unknown permissions {unknown}; known: {', '.join(PERMISSIONS)}")
        return v

    def keys(self) -> List[APIKey]:
        out = []
        for k in self.api_keys:
            key = APIKey(key=k) if isinstance(k, str) else k
            out.append(key.model_copy(update={
                "requests_per_minute": key.requests_per_minute or self.requests_per_minute,
                "tokens_per_day": key.tokens_per_day or self.tokens_per_day}))
        return out

    def granted(self) -> frozenset:
        out: set = set()
        for p in self.permissions:
            out.update(ALIASES.get(p, (p,)))
        return frozenset(PERMISSIONS) if "admin" in out else frozenset(out)


class TokenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    secret_key: str = Field(min_length=16)
    token_expire_in_minutes: float = Field(default=30, gt=0)


class AuthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auth_config: TokenConfig
    user_config: List[UserConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "AuthConfig":
        names = [u.username for u in self.user_config]
        if len(set(names)) != len(names):
            raise ValueError("usernames must be unique")
        keys = [k.key for u in self.user_config for k in u.keys()]
        if len(set(keys)) != len(keys):
            raise ValueError("an API key is listed twice")
        return self

    def users(self) -> Dict[str, UserConfig]:
        return {u.username: u for u in self.user_config}


class AuthConfigError(ValueError):
    pass


def load_auth_config(path: str) -> AuthConfig:
    """Reads and checks the file; every problem is one readable sentence."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise AuthConfigError(f"cannot read the auth config {path}: {e.strerror}") from None
    except ValueError as e:
        raise AuthConfigError(f"the auth config {path} is not valid JSON: {e}") from None
    try:
        return AuthConfig.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise AuthConfigError(f"the auth config {path} is invalid at {where}: {first['msg']}") from None
