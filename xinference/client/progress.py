"""Text for a launch's progress bar (CLI and web UI)."""

from typing import Optional

from ..api.protocol.progress import download_summary

__all__ = ["download_summary", "eta_text", "mb"]


def mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def eta_text(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds + 0.5)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
