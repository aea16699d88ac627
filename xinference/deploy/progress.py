"""Launch with a progress bar: used by `xinference launch` and `xinference-local --launch`."""

import sys
import time
from typing import Any, Dict

from tqdm import tqdm

from ..client import Client
from ..client.common import APIError


def launch_with_progress(client: Client, poll: float = 0.25, **launch: Any) -> str:
    """Starts a launch without waiting, shows its progress, returns the uid when ready."""
    uid = client.launch_model(wait_ready=False, **launch)
    try:
        with tqdm(total=100, desc=f"Launching {uid}", unit="%", file=sys.stderr,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}") as bar:
            while True:
                desc = _describe(client, uid)
                value = client.get_launch_model_progress(uid)["progress"]
                bar.update(int(value * 100) - bar.n)
                if desc.get("status") == "READY":
                    bar.update(100 - bar.n)
                    return uid
                time.sleep(poll)
    except KeyboardInterrupt:
        try:
            client.terminate_model(uid)
        except RuntimeError:
            pass
        raise


def _describe(client: Client, uid: str) -> Dict[str, Any]:
    try:
        return client.describe_model(uid)
    except APIError as e:
        if e.status_code == 404:
            # A launch that failed is removed at once; the 404 carries the reason.
            raise RuntimeError(e.detail) from None
        raise
