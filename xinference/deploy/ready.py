"""What `xinference-local` prints once it serves, and its optional first launch."""

import logging
import sys
from typing import Optional

from ..client import Client
from .progress import launch_with_progress

logger = logging.getLogger(__name__)


def announce(endpoint: str, launch: Optional[str]) -> None:
    lines = [f"Xinference is running at {endpoint}  (API docs: {endpoint}/docs)"]
    if launch:
        try:
            with Client(endpoint) as client:
                uid = launch_with_progress(client, model_name=launch, model_uid=launch)
        except Exception as e:  # the cluster keeps serving; say why the model did not start
            logger.error("could not launch %s: %s", launch, e)
            return
        lines += [
            f"Model {uid!r} is launched and ready. Try it:",
            f"  curl {endpoint}/v1/chat/completions -H 'Content-Type: application/json' \\",
            f"    -d '{{\"model\": \"{uid}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}], \"max_tokens\": 32}}'",
            f"  xinference chat --model-uid {uid} -e {endpoint}",
        ]
    else:
        lines.append(f"Launch a model: xinference launch -n gemma-3 -e {endpoint}")
    width = max(len(line) for line in lines)
    bar = "=" * min(width, 100)
    print("\n".join([bar, *lines, bar]), file=sys.stdout, flush=True)
