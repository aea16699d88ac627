"""Hugging Face downloads through huggingface_hub (resume, ETags, redirects, Xet).

`HF_ENDPOINT` picks a mirror, `HF_TOKEN` opens gated repos, `HF_HUB_OFFLINE=1`
allows the cache only: the library reads them; errors here name them.
"""

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO, Dict, Optional, Tuple, cast
from urllib.parse import urlsplit

from ...errors import HubUnreachableError, InvalidRequestError
from .files import RepoFile

NAME = "huggingface"
OFFLINE_ENV = "HF_HUB_OFFLINE"
WRITE_STEP = 1 << 20
TIMEOUT_ENV = "XINFERENCE_HUB_TIMEOUT"
DEFAULT_TIMEOUT_S = 10.0


def _endpoint() -> str:
    # read at call time (huggingface_hub reads it once, at import): a launch's `envs`
    # and a worker started with a mirror both take effect
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _timeout() -> float:
    """Seconds to wait for the hub's answer to one request (huggingface_hub waits
    forever for a listing from a hub that accepts the connection and never answers)."""
    return float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)


def list_repo(repo_id: str, revision: Optional[str],
              wanted: Optional[str] = None) -> Tuple[str, Dict[str, RepoFile]]:
    """The commit a revision points at, and every file with its size and LFS hash."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=_endpoint()).model_info(repo_id, revision=revision, files_metadata=True,
                                                      timeout=_timeout())
    except Exception as e:
        raise _translate(e, repo_id, wanted, revision) from None
    files = {
        s.rfilename: RepoFile(int(s.size or 0), s.lfs.sha256 if s.lfs is not None else None)
        for s in info.siblings or []
    }
    return str(info.sha), files


class _HashingFile:
    """The partial file as http_get writes it, hashed on the way: verifying a download
    then costs no second read of it (~1 s per GB here)."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.sha256 = self._hash_prefix()

    def _hash_prefix(self) -> "hashlib._Hash":
        """The hash of the bytes before the write position (a resumed download's)."""
        end = self._f.tell()
        h = hashlib.sha256()
        self._f.seek(0)
        while self._f.tell() < end and (block := self._f.read(min(8 << 20, end - self._f.tell()))):
            h.update(block)
        self._f.seek(end)
        return h

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self._f.write(data)

    def truncate(self, size: Optional[int] = None) -> int:
        # http_get rewinds when a server ignores the Range it sent
        done = self._f.truncate(size)
        self.sha256 = self._hash_prefix()
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)  # tell, seek, flush: nothing that writes


def download(repo_id: str, filename: str, revision: str, local_dir: Path, size: int) -> Optional[str]:
    """One file into `local_dir`, resuming from `<file>.incomplete`; returns its sha256.

    hf_hub_download names its partial file anew in each process and truncates it, so a
    download killed with its worker would start over (huggingface_hub 2.4): the same
    steps it takes (the file's metadata, then `http_get` with a Range from the bytes
    already there) are taken here with a partial file of our own, kept across processes.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers, disable_progress_bars

    disable_progress_bars()  # our own progress goes to the launch's bar, not to stderr
    # http_get reads and writes in steps of this size (10 MiB by default): at a slow
    # hub's 1 MB/s a bar would stand still for 10 s, and a killed download would lose up
    # to 10 MiB. This runs in the replica's own process.
    constants.DOWNLOAD_CHUNK_SIZE = WRITE_STEP

    target = local_dir / filename
    if target.is_file() and target.stat().st_size == size:
        return None  # fetched already (an index read before the rest); verified by a read
    partial = target.with_name(target.name + ".incomplete")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        url = hf_hub_url(repo_id, filename, revision=revision, endpoint=_endpoint())
        meta = get_hf_file_metadata(url, timeout=_timeout())
        have = partial.stat().st_size if partial.exists() else 0
        if have > size:
            have = 0  # not this file's bytes: start over
        with partial.open("r+b" if have else "wb") as f:
            f.seek(have)
            f.truncate()
            hashed = _HashingFile(f)
            # the token goes to the hub only, never to the CDN a large file redirects to
            same_host = urlsplit(meta.location).netloc == urlsplit(url).netloc
            http_get(meta.location, cast(BinaryIO, hashed), resume_size=have, expected_size=size,
                     headers=build_hf_headers() if same_host else None, displayed_filename=filename)
    except Exception as e:
        raise _translate(e, repo_id, filename, revision) from None
    partial.replace(target)
    return hashed.sha256.hexdigest()


def _translate(e: Exception, repo_id: str, filename: Optional[str], revision: Optional[str]) -> Exception:
    from huggingface_hub import errors

    what = f"{repo_id}/{filename}" if filename else repo_id
    where = f"Hugging Face ({_endpoint()})"
    if isinstance(e, errors.GatedRepoError):
        return InvalidRequestError(
            f"{where} repo {repo_id} is gated: accept its terms on the hub and set HF_TOKEN "
            "on the worker (or in the launch's envs).", param="model_name", code="gated_repo")
    if isinstance(e, errors.RepositoryNotFoundError):
        return InvalidRequestError(
            f"{where} has no repo {repo_id} (or it is private: set HF_TOKEN). A mirror that "
            "lacks it? HF_ENDPOINT picks another.", param="model_name", code="repo_not_found")
    if isinstance(e, errors.RevisionNotFoundError):
        return InvalidRequestError(f"{where} repo {repo_id} has no revision {revision!r}.",
                                   param="model_name", code="revision_not_found")
    if isinstance(e, errors.EntryNotFoundError):
        return InvalidRequestError(f"{where} has no file {what}.", param="model_name",
                                   code="file_not_found")
    if isinstance(e, errors.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        return HubUnreachableError(
            f"{where} answered HTTP {status} for {what}: {str(e).splitlines()[0]}. "
            "Set HF_ENDPOINT to a mirror, or download_hub=modelscope.", code="hub_error")
    return HubUnreachableError(
        f"Could not download {what} from {where}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
        "Check the worker's network; set HF_ENDPOINT to a mirror, use download_hub=modelscope, "
        "or HF_HUB_OFFLINE=1 to launch only what is cached.", code="hub_unreachable")
