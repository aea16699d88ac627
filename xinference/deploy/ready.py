"""What `xinference-local` prints once it serves, and its optional first launch."""

import logging
import sys
from typing import Any, Optional

from ..client import Client
from .progress import launch_with_progress

logger = logging.getLogger(__name__)


def _launcher_token(settings: Any) -> Optional[str]:
    """Under --auth-config, `--launch` acts as the first user allowed to start models."""
    if settings is None or settings.auth is None:
        return None
    from ..api.auth.principal import Authenticator

    for user in settings.auth.user_config:
        if "models:start" in user.granted():
            return Authenticator(settings.auth).issue(user.username)
    raise RuntimeError("no user of the auth config may start models (models:start)")


def announce(endpoint: str, launch: Optional[str], settings: Any = None) -> None:
    lines = [f"Xinference is running at {endpoint}  (API docs: {endpoint}/docs)"]
    secured = settings is not None and settings.auth is not None
    if secured:
        lines.append("Authentication is on: send `Authorization: Bearer <api key>` (CLI: --api-key or $XINFERENCE_API_KEY).")
    if launch:
        try:
            with Client(endpoint, api_key=_launcher_token(settings)) as client:
                uid = launch_with_progress(client, model_name=launch, model_uid=launch)
        except Exception as e:  # the cluster keeps serving; say why the model did not start
            logger.error("could not launch %s: %s", launch, e)
            return
        lines += [
            f"Model {uid!r} is launched and ready. Try it:",
            f"  curl {endpoint}/v1/chat/completions -H 'Content-Type: application/json' \\"
            + (" -H \"Authorization: Bearer $XINFERENCE_API_KEY\" \\" if secured else ""),
            f"    -d '{{\"model\": \"{uid}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}], \"max_tokens\": 32}}'",
            f"  xinference chat --model-uid {uid} -e {endpoint}",
        ]
    else:
        lines.append(f"Launch a model: xinference launch -n gemma-3 -e {endpoint}")
    width = max(len(line) for line in lines)
    bar = "=" * min(width, 100)
    print("\n".join([bar, *lines, bar]), file=sys.stdout, flush=True)
