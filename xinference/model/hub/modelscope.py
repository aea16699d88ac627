"""ModelScope downloads through the `modelscope` package (resume, its own lock).

`MODELSCOPE_ENDPOINT` picks the site or a mirror (e.g. the international site for
users outside mainland China), `MODELSCOPE_API_TOKEN` opens private repos. ModelScope
has no offline variable of its own: `MODELSCOPE_OFFLINE=1` is ours (cache only).
"""

import os
from pathlib import Path
from typing import Dict, Optional, Tuple

from ...errors import HubUnreachableError, InvalidRequestError
from .files import RepoFile

NAME = "modelscope"
OFFLINE_ENV = "MODELSCOPE_OFFLINE"
DEFAULT_REVISION = "master"
# The client retries an API call 5 times with back-off (~45 s before a refused
# connection is reported): one try for the listing, which comes first and tells an
# unreachable hub within a second; downloads keep the client's retries.
os.environ.setdefault("MODELSCOPE_API_MAX_RETRIES", "1")
os.environ.setdefault("MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS", "1")


def _endpoint() -> str:
    return os.environ.get("MODELSCOPE_ENDPOINT") or "https://modelscope.cn"


def _hub_api():
    try:
        from modelscope_hub.api import HubApi
    except ImportError:
        raise InvalidRequestError(
            "Downloads from ModelScope need the modelscope package on the worker: "
            "`pip install 'xinference[modelscope]'`; or use download_hub=huggingface.",
            param="download_hub") from None
    return HubApi()


def list_repo(repo_id: str, revision: Optional[str],
              wanted: Optional[str] = None) -> Tuple[str, Dict[str, RepoFile]]:
    revision = revision or DEFAULT_REVISION
    api = _hub_api()
    try:
        listing = api.list_repo_files(repo_id, "model", revision=revision, recursive=True)
    except Exception as e:
        raise _translate(e, repo_id, wanted, revision) from None
    files = {f.path: RepoFile(int(f.size or 0), f.sha256) for f in listing if not f.is_dir}
    return revision, files


def download(repo_id: str, filename: str, revision: str, local_dir: Path, size: int) -> Optional[str]:
    # the client resumes from `<file>.incomplete` in local_dir by itself
    _hub_api()  # the install hint, before the import below
    from modelscope.hub.file_download import model_file_download

    try:
        model_file_download(repo_id, filename, revision=revision, local_dir=str(local_dir))
    except Exception as e:
        raise _translate(e, repo_id, filename, revision) from None
    return None  # the file is hashed when it is verified


def _translate(e: Exception, repo_id: str, filename: Optional[str], revision: str) -> Exception:
    from modelscope_hub import errors

    cause = e.__cause__ if isinstance(e.__cause__, Exception) else e
    what = f"{repo_id}/{filename}" if filename else repo_id
    where = f"ModelScope ({_endpoint()})"
    if isinstance(cause, errors.NotExistError) or getattr(getattr(e, "response", None), "status_code", 0) == 404:
        return InvalidRequestError(
            f"{where} has no {'file ' + what if filename else 'repo ' + repo_id} at revision "
            f"{revision}. MODELSCOPE_ENDPOINT picks another site or mirror.",
            param="model_name", code="file_not_found" if filename else "repo_not_found")
    if isinstance(cause, (errors.AuthenticationError, errors.PermissionDeniedError)):
        return InvalidRequestError(f"{where} refused access to {repo_id}: set MODELSCOPE_API_TOKEN on "
                                   "the worker.", param="model_name", code="gated_repo")
    return HubUnreachableError(
        f"Could not download {what} from {where}: {type(cause).__name__}: "
        f"{str(cause).splitlines()[0] if str(cause) else ''}. Check the worker's network; set "
        "MODELSCOPE_ENDPOINT to a mirror, use download_hub=huggingface, or MODELSCOPE_OFFLINE=1 "
        "to launch only what is cached.", code="hub_unreachable")
