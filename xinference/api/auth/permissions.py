"""Which permission each route needs, in one table (Xinference's names).

A route missing from the table needs `admin`: a new route is closed until someone
decides who may call it (tests/unit/test_auth_routes.py fails for such a route).
"""

from types import MappingProxyType
from typing import Mapping, Optional, Tuple

# Routes anyone may call: health, whether auth is on, the login itself, and what
# browsers and the `ollama` CLI probe before they can hold a key. The API docs
# describe the API, which is public; the web UI has its own login form.
PUBLIC = "public"

ROUTES: Mapping[Tuple[str, str], str] = MappingProxyType({
    ("GET", "/status"): PUBLIC,
    ("GET", "/v1/cluster/auth"): PUBLIC,
    ("POST", "/token"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("HEAD", "/"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    # cluster
    ("GET", "/v1/address"): "admin",  # the internal xoscar address: workers join with it
    ("GET", "/v1/workers"): "admin",
    ("GET", "/v1/cluster/info"): "admin",
    ("DELETE", "/v1/clusters"): "admin",
    ("GET", "/v1/cluster/version"): "models:list",
    ("GET", "/metrics"): "monitor:view",
    ("GET", "/v1/auth/usage"): "admin",
    # models
    ("POST", "/v1/models"): "models:start",
    ("GET", "/v1/models"): "models:list",
    ("GET", "/v1/models/instances"): "models:list",
    ("GET", "/v1/models/{model_uid}"): "models:list",
    ("DELETE", "/v1/models/{model_uid}"): "models:stop",
    ("GET", "/v1/models/{model_uid}/progress"): "models:list",
    ("POST", "/v1/models/{model_uid}/cancel"): "models:stop",
    ("GET", "/v1/models/{model_uid}/replicas"): "models:list",
    ("GET", "/v1/models/{model_uid}/events"): "models:list",
    ("POST", "/v1/models/{model_uid}/replicas"): "models:start",
    ("DELETE", "/v1/models/{model_uid}/replicas/{replica_id}"): "models:stop",
    ("POST", "/v1/models/{model_uid}/requests/{request_id}/abort"): "models:read",
    ("GET", "/v1/engines/{model_name}"): "models:list",
    ("GET", "/v1/engines/{model_type}/{model_name}"): "models:list",
    # registrations and the cache
    ("GET", "/v1/model_registrations/{model_type}"): "models:list",
    ("GET", "/v1/model_registrations/{model_type}/{model_name}"): "models:list",
    ("POST", "/v1/model_registrations/{model_type}"): "models:register",
    ("DELETE", "/v1/model_registrations/{model_type}/{model_name}"): "models:unregister",
    ("GET", "/v1/cache/models"): "cache:list",
    ("GET", "/v1/cache/models/files"): "cache:list",
    ("DELETE", "/v1/cache/models"): "cache:delete",
    # inference
    ("POST", "/v1/chat/completions"): "models:read",
    ("POST", "/v1/completions"): "models:read",
    ("POST", "/v1/embeddings"): "models:read",
    ("POST", "/v1/rerank"): "models:read",
    # Ollama
    ("GET", "/api/version"): "models:list",
    ("POST", "/api/chat"): "models:read",
    ("POST", "/api/generate"): "models:read",
    ("POST", "/api/embed"): "models:read",
    ("POST", "/api/embeddings"): "models:read",
    ("GET", "/api/tags"): "models:list",
    ("GET", "/api/ps"): "models:list",
    ("POST", "/api/show"): "models:list",
    ("POST", "/api/pull"): "models:start",
    ("DELETE", "/api/delete"): "models:stop",
    # Ollama's model-authoring routes: known, and answered 501 on a cluster
    ("POST", "/api/create"): "models:list",
    ("POST", "/api/copy"): "models:list",
    ("POST", "/api/push"): "models:list",
    ("POST", "/api/blobs/{digest}"): "models:list",
    ("HEAD", "/api/blobs/{digest}"): "models:list",
})

# Inference: what per-key quotas count (not an abort, which frees capacity).
METERED = frozenset({
    ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"),
    ("POST", "/v1/rerank"), ("POST", "/api/chat"), ("POST", "/api/generate"), ("POST", "/api/embed"),
    ("POST", "/api/embeddings"),
})


def needed(method: str, path_template: Optional[str]) -> str:
    """The permission a request needs; `path_template` is the matched route's path
    (None: no route matched, which any authenticated caller may learn)."""
    if path_template is None:
        return "authenticated"
    if method == "HEAD":
        method = "GET" if ("HEAD", path_template) not in ROUTES else "HEAD"
    return ROUTES.get((method, path_template), "admin")
