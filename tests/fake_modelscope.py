"""A fake ModelScope hub on 127.0.0.1 for download tests (stdlib only).

Serves the routes the `modelscope` client (>= 1.38, which delegates to `modelscope_hub`)
calls for `model_file_download`, `snapshot_download` (with `allow_patterns`) and
`HubApi().get_model_files`:

    GET       /api/v1/models/{owner}/{name}                  repo info
    GET       /api/v1/models/{owner}/{name}/revisions        branches and tags
    GET       /api/v1/models/{owner}/{name}/repo/files       file list (Revision, Recursive, Root)
    GET/HEAD  /api/v1/models/{owner}/{name}/repo             one file (Revision, FilePath), Range
    GET       /openapi/v1/models/{owner}/{name}              repo info, OpenAPI envelope
    anything else                                            404 in the hub's error shape

    with FakeModelScope(cache_dir=tmp_path / "ms-cache") as ms:
        ms.add_repo("acme/tiny-GGUF", {"tiny-q4_k_m.gguf": "/path/on/disk", "config.json": b"{}"})
        env = {**os.environ, **ms.env}          # for a subprocess; or `with ms.environ():`
        ...
        ms.bytes_served("acme/tiny-GGUF", "tiny-q4_k_m.gguf"); ms.requests

The client points at it through MODELSCOPE_ENDPOINT, which accepts http:// and a port.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Tuple, Union
from urllib.parse import parse_qs, unquote, urlsplit

FileSource = Union[str, "os.PathLike[str]", bytes]

# A code the client has no special mapping for, so the HTTP status decides the exception
# (404 -> modelscope_hub NotExistError, re-raised by the modelscope compat layer as
# requests.HTTPError).
_NOT_FOUND_CODE = 10010205001
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass
class RequestRecord:
    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]
    status: int = 0
    # Body bytes actually written for a file response (less than asked when cut).
    body_bytes: int = 0


@dataclass
class _File:
    path: str
    source: Union[Path, bytes]
    size: int
    sha256: str


@dataclass
class _Repo:
    repo_id: str
    files: Dict[str, _File]
    revisions: Tuple[str, ...]
    tags: Tuple[str, ...]
    linked_etag: bool
    created_at: int = field(default_factory=lambda: int(time.time()))


def _sha256(source: Union[Path, bytes]) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FakeModelScope:
    """A ThreadingHTTPServer on 127.0.0.1:0 in a daemon thread; see the module docstring.

    Knobs for failure tests (all guarded by one lock, safe to set while serving):
      throttle      seconds slept after each chunk of a file body, so a test can kill a
                    downloader mid-file;
      cut_after()   drop the connection after N body bytes of a file's next responses;
      fail()        answer a file's next requests with an HTTP status (e.g. 503).
    """

    def __init__(self, *, chunk_size: int = 64 * 1024, cache_dir: Optional[os.PathLike] = None,
                 throttle: float = 0.0):
        self.chunk_size = chunk_size
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.throttle = throttle
        self.requests: List[RequestRecord] = []
        self._repos: Dict[str, _Repo] = {}
        self._served: Dict[Tuple[str, str], int] = {}
        self._cuts: Dict[Tuple[str, str], List[int]] = {}
        self._fails: Dict[Tuple[str, str], List[int]] = {}
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._port: Optional[int] = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "FakeModelScope":
        handler = type("_Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._port = self._server.server_address[1]
        # Handler threads must not keep a test process alive after a failed test.
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fake-modelscope", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeModelScope":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        # Kept after stop(): a test can then check the client against a refused connection.
        assert self._port is not None, "FakeModelScope was never started"
        return f"http://127.0.0.1:{self._port}"

    @property
    def env(self) -> Dict[str, str]:
        """Environment that points a modelscope client (in-process or a child) at this hub."""
        env = {
            # Explicit endpoint: the client then trusts it and skips probing modelscope.cn
            # and modelscope.ai for the repo (HubApi.resolve_endpoint_for_read).
            "MODELSCOPE_ENDPOINT": self.url,
            # Otherwise every download first probes /api/v1/repos/internalAccelerationInfo
            # for an Alibaba Cloud region.
            "MODELSCOPE_DOWNLOAD_INTRA_CLOUD": "false",
            # Set (even empty) so ~/.modelscope credentials of the developer are not sent.
            "MODELSCOPE_API_TOKEN": "",
        }
        if self.cache_dir is not None:
            # Lock files go under the cache dir even when local_dir is given.
            env["MODELSCOPE_CACHE"] = self.cache_dir
        return env

    @contextlib.contextmanager
    def environ(self) -> Iterator[None]:
        """Apply `env` to os.environ for an in-process client, then restore it.

        modelscope_hub caches its config (endpoint, token, cache dir) process-wide on
        first use, so the cache is cleared on entry and exit to make the env take effect.
        """
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        _reset_modelscope_config()
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            _reset_modelscope_config()

    # -- content ---------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: Mapping[str, FileSource], *,
                 revisions: Tuple[str, ...] = ("master",), tags: Tuple[str, ...] = (),
                 linked_etag: bool = True) -> None:
        """Publish `files` ({path in repo: path on disk or bytes}) under every revision.

        `linked_etag` sends the sha256 as X-Linked-ETag, as the real LFS CDN does; the
        client then verifies single-file downloads too (snapshot downloads always verify
        the listing's Sha256).
        """
        entries = {}
        for name, src in files.items():
            source: Union[Path, bytes] = src if isinstance(src, bytes) else Path(src)
            size = len(source) if isinstance(source, bytes) else source.stat().st_size
            entries[name.strip("/")] = _File(name.strip("/"), source, size, _sha256(source))
        with self._lock:
            self._repos[repo_id] = _Repo(repo_id, entries, tuple(revisions), tuple(tags),
                                         linked_etag)

    def bytes_served(self, repo_id: str, file_path: str) -> int:
        """File body bytes written to clients for this file, over all requests."""
        with self._lock:
            return self._served.get((repo_id, file_path), 0)

    def file_requests(self, repo_id: str, file_path: str) -> List[RequestRecord]:
        """GET/HEAD requests for one file's content, in arrival order."""
        owner_name = f"/api/v1/models/{repo_id}/repo"
        with self._lock:
            return [r for r in self.requests
                    if r.path == owner_name and r.query.get("FilePath") == file_path]

    def cut_after(self, repo_id: str, file_path: str, nbytes: int, times: int = 1) -> None:
        with self._lock:
            self._cuts.setdefault((repo_id, file_path), []).extend([nbytes] * times)

    def fail(self, repo_id: str, file_path: str, status: int = 503, times: int = 1) -> None:
        with self._lock:
            self._fails.setdefault((repo_id, file_path), []).extend([status] * times)

    # -- used by the handler ---------------------------------------------------------------

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)

    def _repo(self, repo_id: str) -> Optional[_Repo]:
        with self._lock:
            return self._repos.get(repo_id)

    def _pop(self, table: Dict[Tuple[str, str], List[int]], key: Tuple[str, str]) -> Optional[int]:
        with self._lock:
            queue = table.get(key)
            return queue.pop(0) if queue else None

    def _count(self, key: Tuple[str, str], n: int) -> None:
        with self._lock:
            self._served[key] = self._served.get(key, 0) + n


def _reset_modelscope_config() -> None:
    config = sys.modules.get("modelscope_hub.config")
    if config is not None:
        config.set_default_config(None)


class _Handler(BaseHTTPRequestHandler):
    hub: FakeModelScope
    # HTTP/1.1 keep-alive, like the real hub: the client reuses pooled connections.
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
        pass  # the request log is self.hub.requests

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # -- routing ---------------------------------------------------------------------------

    def _dispatch(self, head: bool) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        path = unquote(split.path)
        self._rec = RequestRecord(self.command, path, query, dict(self.headers.items()))
        self.hub._record(self._rec)
        try:
            parts = [p for p in path.split("/") if p]
            if parts[:3] == ["openapi", "v1", "models"] and len(parts) == 5:
                self._openapi_model("/".join(parts[3:5]))
            elif parts[:3] == ["api", "v1", "models"] and len(parts) >= 5:
                self._legacy_model("/".join(parts[3:5]), parts[5:], query, head)
            else:
                self._not_found(f"No route for {path}")
        except (BrokenPipeError, ConnectionResetError):
            # The client went away (a killed downloader): nothing to answer.
            self.close_connection = True

    def _legacy_model(self, repo_id: str, rest: List[str], query: Dict[str, str],
                      head: bool) -> None:
        repo = self.hub._repo(repo_id)
        if repo is None:
            return self._not_found(f"Model {repo_id} does not exist")
        if not rest:
            owner, name = repo_id.split("/")
            return self._json(200, _ok({"Id": 1, "Path": owner, "Name": name, "Visibility": 5}))
        if rest == ["revisions"]:
            def detail(rev: str) -> dict:
                return {"Revision": rev, "CreatedAt": repo.created_at, "CommitId": _commit(rev)}
            return self._json(200, _ok({"RevisionMap": {
                "Branches": [detail(r) for r in repo.revisions],
                "Tags": [detail(t) for t in repo.tags]}}))
        revision = query.get("Revision") or "master"
        if revision not in repo.revisions and revision not in repo.tags:
            return self._not_found(f"Revision {revision} of {repo_id} does not exist")
        if rest == ["repo", "files"]:
            recursive = query.get("Recursive", "False").lower() == "true"
            return self._json(200, _ok({"Files": _listing(repo, revision, query.get("Root"),
                                                         recursive)}))
        if rest == ["repo"]:
            return self._file(repo, query.get("FilePath", "").strip("/"), head)
        return self._not_found(f"No route for {self._rec.path}")

    def _openapi_model(self, repo_id: str) -> None:
        if self.hub._repo(repo_id) is None:
            return self._json(404, {"success": False, "code": "ResourceNotFound",
                                    "message": f"Model {repo_id} does not exist",
                                    "request_id": uuid.uuid4().hex})
        owner, name = repo_id.split("/")
        self._json(200, {"success": True, "request_id": uuid.uuid4().hex,
                         "data": {"id": repo_id, "owner": owner, "name": name,
                                  "private": False}})

    # -- responses -------------------------------------------------------------------------

    def _file(self, repo: _Repo, file_path: str, head: bool) -> None:
        f = repo.files.get(file_path)
        if f is None:
            return self._not_found(f"File {file_path} does not exist in {repo.repo_id}")
        key = (repo.repo_id, file_path)
        status = self.hub._pop(self.hub._fails, key)
        if status is not None:
            return self._json(status, {"Code": status, "Message": "injected failure",
                                       "RequestId": uuid.uuid4().hex, "Success": False})
        start, end, status = 0, f.size - 1, 200
        rng = self.headers.get("Range")
        match = _RANGE_RE.fullmatch(rng.strip()) if rng else None
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), f.size - 1) if match.group(2) else f.size - 1
            else:  # suffix range: the last N bytes
                start = max(0, f.size - int(match.group(2)))
            if start >= f.size or start > end:
                self._rec.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{f.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        length = end - start + 1 if f.size else 0
        self._rec.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{f.sha256}"')
        if repo.linked_etag:
            self.send_header("X-Linked-ETag", f'"{f.sha256}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        self.end_headers()
        if head or not length:
            return
        cut = self.hub._pop(self.hub._cuts, key)
        self._stream(f, key, start, length, cut)

    def _stream(self, f: _File, key: Tuple[str, str], start: int, length: int,
                cut: Optional[int]) -> None:
        # Read from disk chunk by chunk: test weights may be large, and the byte count must
        # reflect what really went out before a client was killed.
        budget = length if cut is None else min(length, cut)
        opened = io.BytesIO(f.source) if isinstance(f.source, bytes) else open(f.source, "rb")
        with opened as fh:
            fh.seek(start)
            sent = 0
            while sent < budget:
                chunk = fh.read(min(self.hub.chunk_size, budget - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
                self._rec.body_bytes = sent
                self.hub._count(key, len(chunk))
                if self.hub.throttle:
                    time.sleep(self.hub.throttle)
        if sent < length:
            # Short body on a keep-alive connection: close it so the client sees the
            # truncation instead of waiting for the rest.
            self.close_connection = True

    def _not_found(self, message: str) -> None:
        self._json(404, {"Code": _NOT_FOUND_CODE, "Message": message,
                         "RequestId": uuid.uuid4().hex, "Success": False})

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self._rec.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _ok(data: object) -> dict:
    return {"Code": 200, "Data": data, "Message": "success", "RequestId": uuid.uuid4().hex,
            "Success": True}


def _commit(revision: str) -> str:
    return hashlib.sha1(revision.encode()).hexdigest()


def _listing(repo: _Repo, revision: str, root: Optional[str], recursive: bool) -> List[dict]:
    """The repo/files entries: blobs plus "tree" entries for folders, as the real hub lists."""
    root = (root or "").strip("/")
    prefix = f"{root}/" if root else ""
    dirs = set()
    for path in repo.files:
        parts = path.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    out = []
    for path in sorted(dirs | set(repo.files)):
        if not path.startswith(prefix):
            continue
        if not recursive and "/" in path[len(prefix):]:
            continue
        f = repo.files.get(path)
        entry = {"Name": path.rsplit("/", 1)[-1], "Path": path, "Revision": _commit(revision),
                 "CommittedDate": repo.created_at, "Type": "tree" if f is None else "blob",
                 "Size": 0 if f is None else f.size}
        if f is not None:
            entry.update({"Sha256": f.sha256, "IsLFS": f.size > 1024 * 1024, "Mode": "33188"})
        out.append(entry)
    return out
