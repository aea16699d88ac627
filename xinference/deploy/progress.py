"""Launch with a progress bar: used by `xinference launch` and `xinference-local --launch`."""

import sys
import time
from types import MappingProxyType
from typing import Any, Dict

import click
from tqdm import tqdm

from ..client import Client
from ..client.common import APIError
from ..client.progress import download_summary, eta_text, mb

_STAGES = MappingProxyType({"starting": "starting a process", "pending": "waiting", "loading": "loading weights",
           "waiting_for_download": "waiting for another launch's download", "ready": "ready"})


def launch_with_progress(client: Client, poll: float = 0.25, **launch: Any) -> str:
    """Starts a launch without waiting, shows its progress (MB, MB/s and ETA while it
    downloads), returns the uid when ready. Ctrl-C cancels the launch."""
    uid = client.launch_model(wait_ready=False, **launch)
    try:
        with tqdm(total=100, desc=f"Launching {uid}", unit="%", file=sys.stderr,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}") as bar:
            while True:
                desc = _describe(client, uid)
                report = client.get_launch_model_progress(uid)
                bar.update(int(report["progress"] * 100) - bar.n)
                bar.set_postfix_str(stage_text(report), refresh=True)
                if desc.get("status") == "READY":
                    bar.update(100 - bar.n)
                    bar.set_postfix_str("ready")
                    return uid
                time.sleep(poll)
    except KeyboardInterrupt:
        try:
            client.cancel_launch_model(uid)
            click.echo(f"Launch of {uid} cancelled; what was downloaded is kept for the next launch.",
                       err=True)
        except APIError:
            pass  # it failed or finished meanwhile
        raise


def stage_text(report: Dict[str, Any]) -> str:
    download = download_summary(report)
    if download is not None:
        speed = download["speed_bytes_per_s"]
        return (f"downloading {mb(download['downloaded_bytes'])}/{mb(download['total_bytes'])} MB, "
                f"{mb(speed)} MB/s, ETA {eta_text(download['eta_s'])}")
    return _STAGES.get(report.get("stage", ""), report.get("stage", ""))


def _describe(client: Client, uid: str) -> Dict[str, Any]:
    try:
        return client.describe_model(uid)
    except APIError as e:
        if e.status_code == 404:
            # A launch that failed is removed at once; the 404 carries the reason.
            raise RuntimeError(e.detail) from None
        raise
