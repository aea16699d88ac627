"""The shape of GET /v1/models/{uid}/progress, summed for progress bars (CLI, web UI,
Ollama's pull)."""

from typing import Any, Dict, Optional


def download_summary(report: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Bytes done and total, speed (bytes/s) and ETA (s) of the downloads a launch is
    waiting for; None once no replica downloads. Replicas of one worker share one
    download, so each (worker, repo) counts once."""
    seen: Dict[Any, Dict[str, Any]] = {}
    for replica in report.get("replicas") or []:
        download = replica.get("download")
        if not download or replica.get("stage") not in ("downloading", "waiting_for_download"):
            continue
        seen.setdefault((replica.get("worker_address"), download.get("repo")), download)
    if not seen:
        return None
    done = sum(int(d.get("downloaded_bytes") or 0) for d in seen.values())
    total = sum(int(d.get("total_bytes") or 0) for d in seen.values())
    speed = sum(float(d.get("speed_bytes_per_s") or 0) for d in seen.values())
    eta = (total - done) / speed if speed > 0 and total > done else None
    return {"downloaded_bytes": done, "total_bytes": total, "speed_bytes_per_s": speed, "eta_s": eta}
