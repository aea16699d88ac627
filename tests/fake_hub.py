"""A fake Hugging Face Hub on 127.0.0.1 for download tests (stdlib only).

    with FakeHub() as hub:
        hub.add_repo("acme/tiny-GGUF", {"tiny-q4_k_m.gguf": "/path/on/disk", "README.md": b"hi"})
        env = {**os.environ, **hub.env}  # HF_ENDPOINT=hub.url for huggingface_hub
        ...
        assert hub.bytes_served("acme/tiny-GGUF", "tiny-q4_k_m.gguf") == size

It speaks the subset of the Hub protocol that huggingface_hub (checked with 2.4.0) uses to
download models: model_info, list_repo_tree, get_paths_info, HEAD/GET /resolve (with Range)
and the X-Error-Code errors. Files given as a path on disk are served as LFS files: their ETag
is the sha256 and, like the real Hub, /resolve answers with a 302 to a "CDN" - a second
listener on another port, so the client sees another origin and drops its Authorization
header, exactly as with cdn-lfs.hf.co. Files given as bytes are plain git files (ETag = git
blob sha1, served directly). No X-Xet-* header is ever sent, so clients download over HTTP.

huggingface_hub reads HF_ENDPOINT when it is imported: set it before the import (e.g. in a
subprocess's env) or pass endpoint=hub.url to its functions.
"""

import hashlib
import json
import os
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, NamedTuple, Optional, Tuple, Union
from urllib.parse import parse_qs, quote, unquote, urlsplit

CHUNK = 1 << 20
_DATE = "2024-01-01T00:00:00.000Z"  # the one format huggingface_hub's parse_datetime accepts

_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
_API_INFO = re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")
_API_TREE = re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_API_PATHS = re.compile(rf"^/api/models/{_REPO}/paths-info/(?P<rev>[^/]+)$")
_RESOLVE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CDN = re.compile(rf"^/cdn/{_REPO}/(?P<file>.+)$")


class Request(NamedTuple):
    method: str
    path: str  # as sent, query string included
    range: Optional[str]


class _File:
    def __init__(self, name: str, source: Union[str, "os.PathLike[str]", bytes]) -> None:
        self.name = name
        if isinstance(source, bytes):
            self.data: Optional[bytes] = source
            self.path: Optional[str] = None
            self.size = len(source)
        else:
            self.data = None
            self.path = os.fspath(source)
            self.size = os.path.getsize(self.path)
        self._sha256: Optional[str] = None
        self._lock = threading.Lock()

    @property
    def lfs(self) -> bool:
        return self.path is not None

    @property
    def sha256(self) -> str:
        # Hashing a multi-GB file takes seconds: do it once, on first use, not in add_repo.
        with self._lock:
            if self._sha256 is None:
                h = hashlib.sha256()
                if self.data is not None:
                    h.update(self.data)
                else:
                    with open(str(self.path), "rb") as f:
                        for block in iter(lambda: f.read(CHUNK), b""):
                            h.update(block)
                self._sha256 = h.hexdigest()
            return self._sha256

    def _pointer(self) -> bytes:
        return (
            "version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{self.sha256}\nsize {self.size}\n"
        ).encode()

    @property
    def git_oid(self) -> str:
        # What git stores: the blob itself, or the LFS pointer for LFS files.
        blob = self._pointer() if self.data is None else self.data
        return hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid

    def lfs_info(self, sha_key: str) -> Optional[dict]:
        # The tree API names the sha256 "oid", model_info(blobs=true) names it "sha256".
        if not self.lfs:
            return None
        return {sha_key: self.sha256, "size": self.size, "pointerSize": len(self._pointer())}


class _Repo:
    def __init__(self, repo_id: str, files: Dict[str, _File], sha: str, token: Optional[str]):
        self.repo_id = repo_id
        self.files = files
        self.sha = sha
        self.token = token


class FakeHub:
    """Two listeners: the hub (url) and its "CDN" (cdn_url). Thread-safe; start/stop or use
    as a context manager.

    requests: every request as Request(method, path with query, Range header), both listeners.
    """

    def __init__(self, redirect: bool = True) -> None:
        """redirect: answer /resolve of LFS files with a 302 to the CDN listener (as the Hub);
        False: serve them from /resolve directly (200/206, same ETag and X-Linked-* headers)."""
        self.redirect = redirect
        self.requests: List[Request] = []
        self._repos: Dict[str, _Repo] = {}
        self._served: Dict[Tuple[str, str], int] = {}
        self._fail: Dict[Tuple[str, str], Tuple[int, bool]] = {}
        self._rate: Optional[int] = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        # One handler class per hub, so that handlers find their hub.
        handler = type("Handler", (_Handler,), {"hub": self})
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._cdn.server_address[1]}"
        self._threads: List[threading.Thread] = []

    # -- set-up -------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Dict[str, Union[str, "os.PathLike[str]", bytes]],
        revision_sha: Optional[str] = None,
        token: Optional[str] = None,
    ) -> str:
        """Adds (or replaces) a repo; returns its commit sha.

        files: name in the repo -> path on disk (served as an LFS file) or bytes (a git file).
        token: make the repo gated: its files are served only with "Authorization: Bearer
        <token>" (401 without a token, 403 with another one, X-Error-Code: GatedRepo). As on the
        Hub, its metadata (model_info, tree) stays public.
        """
        entries = {name: _File(name, src) for name, src in files.items()}
        if revision_sha is None:
            # Stable for the same content, new when it changes (without hashing big files).
            state = sorted((f.name, f.size, f.path or f.git_oid) for f in entries.values())
            revision_sha = hashlib.sha1(repr((repo_id, state)).encode()).hexdigest()
        assert re.fullmatch(r"[0-9a-f]{40}", revision_sha), "a commit sha is 40 hex digits"
        with self._lock:
            self._repos[repo_id] = _Repo(repo_id, entries, revision_sha, token)
        return revision_sha

    @property
    def env(self) -> Dict[str, str]:
        """Environment for a huggingface_hub client process that should use this hub."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    def throttle(self, bytes_per_s: Optional[int]) -> None:
        """Slow every body (also those already being sent) down; None = full speed."""
        self._rate = bytes_per_s

    def fail_after(self, repo_id: str, filename: str, n_bytes: int, reset: bool = False) -> None:
        """Cut the next GET of that file after n_bytes of body: a FIN (the client sees a short
        body), or with reset=True a TCP RST (the client sees a connection reset)."""
        with self._lock:
            self._fail[(repo_id, filename)] = (n_bytes, reset)

    def bytes_served(self, repo_id: str, filename: str) -> int:
        """Body bytes handed to the socket for that file so far, over all GETs and routes."""
        with self._lock:
            return self._served.get((repo_id, filename), 0)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> "FakeHub":
        for server in (self._hub, self._cdn):
            t = threading.Thread(target=server.serve_forever, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._closing.set()  # ends throttled bodies still being sent
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------

    def _count(self, key: Tuple[str, str], n: int) -> None:
        with self._lock:
            self._served[key] = self._served.get(key, 0) + n

    def _take_fail(self, key: Tuple[str, str]) -> Optional[Tuple[int, bool]]:
        with self._lock:
            return self._fail.pop(key, None)


class _HubError(Exception):
    def __init__(self, status: int, code: Optional[str], message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        hub = self.hub
        with hub._lock:
            hub.requests.append(Request(self.command, self.path, self.headers.get("Range")))
        body = b""
        if self.command == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        try:
            if self.server is hub._cdn:
                m = _CDN.match(path)
                if not m or self.command == "POST":
                    raise _HubError(404, None, "Not found")
                # The real CDN URL is signed: clients send no Authorization header there.
                repo = self._repo(unquote(m["repo"]), check_token=False)
                return self._file(repo, self._entry(repo, unquote(m["file"])), cdn=True)
            m = _RESOLVE.match(path)
            if m and self.command != "POST":
                repo = self._repo(m["repo"], m["rev"])
                return self._file(repo, self._entry(repo, unquote(m["file"])), cdn=False)
            m = _API_INFO.match(path)
            if m and self.command == "GET":
                repo = self._repo(m["repo"], m["rev"], check_token=False)
                return self._json(self._model_info(repo, query.get("blobs") == ["true"]))
            m = _API_TREE.match(path)
            if m and self.command == "GET":
                repo = self._repo(m["repo"], m["rev"], check_token=False)
                recursive = query.get("recursive") == ["true"]
                return self._json(self._tree(repo, unquote(m["path"] or ""), recursive))
            m = _API_PATHS.match(path)
            if m and self.command == "POST":
                repo = self._repo(m["repo"], m["rev"], check_token=False)
                form = _form(body, self.headers.get("Content-Type", ""))
                wanted = set(form.get("paths", []))
                return self._json([e for e in self._tree(repo, "", True) if e["path"] in wanted])
            raise _HubError(404, None, "Not found")
        except _HubError as e:
            self._error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- lookups (raise _HubError as the Hub would answer) ----------------------------------------

    def _repo(
        self, repo_id: str, revision: Optional[str] = None, check_token: bool = True
    ) -> _Repo:
        repo = self.hub._repos.get(repo_id)
        if repo is None:
            raise _HubError(404, "RepoNotFound", "Repository not found")
        if check_token and repo.token is not None:
            auth = self.headers.get("Authorization")
            if auth is None:
                raise _HubError(401, "GatedRepo", f"Access to model {repo_id} is restricted.")
            if auth != f"Bearer {repo.token}":
                raise _HubError(403, "GatedRepo", f"Access to model {repo_id} is restricted.")
        if revision is not None and unquote(revision) not in ("main", repo.sha):
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}")
        return repo

    def _entry(self, repo: _Repo, filename: str) -> _File:
        entry = repo.files.get(filename)
        if entry is None:
            raise _HubError(404, "EntryNotFound", f'{filename} does not exist on "main"')
        return entry

    # -- responses ------------------------------------------------------------------------------

    def _model_info(self, repo: _Repo, blobs: bool) -> dict:
        siblings = []
        for f in repo.files.values():
            s: dict = {"rfilename": f.name}
            if blobs:
                s.update(size=f.size, blobId=f.git_oid)
                if f.lfs:
                    s["lfs"] = f.lfs_info("sha256")
            siblings.append(s)
        return {
            "_id": repo.sha[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": repo.sha,
            "lastModified": _DATE,
            "createdAt": _DATE,
            "private": False,
            "gated": "manual" if repo.token else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }

    def _tree(self, repo: _Repo, root: str, recursive: bool) -> List[dict]:
        prefix = root.strip("/") + "/" if root.strip("/") else ""
        if prefix and not any(name.startswith(prefix) for name in repo.files):
            raise _HubError(404, "EntryNotFound", f'{root} does not exist on "main"')
        out: List[dict] = []
        folders = set()
        for f in repo.files.values():
            if not f.name.startswith(prefix):
                continue
            rest = f.name[len(prefix) :].split("/")
            # Folders between the root and the file, as the Hub lists them too.
            for depth in range(1, len(rest) if recursive else min(len(rest), 2)):
                folders.add(prefix + "/".join(rest[:depth]))
            if recursive or len(rest) == 1:
                entry = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.name}
                if f.lfs:
                    entry["lfs"] = f.lfs_info("oid")
                out.append(entry)
        for d in sorted(folders):
            oid = hashlib.sha1(d.encode()).hexdigest()
            out.append({"type": "directory", "oid": oid, "size": 0, "path": d})
        return sorted(out, key=lambda e: e["path"])

    def _json(self, obj: object) -> None:
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, e: _HubError) -> None:
        data = json.dumps({"error": e.message}).encode()
        self.send_response(e.status)
        if e.code:
            self.send_header("X-Error-Code", e.code)
        self.send_header("X-Error-Message", e.message)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _file(self, repo: _Repo, f: _File, cdn: bool) -> None:
        hub = self.hub
        if f.lfs and not cdn and hub.redirect:
            # The Hub's answer for LFS files: the file's metadata on the redirect itself.
            self.send_response(302)
            self.send_header("Location", f"{hub.cdn_url}/cdn/{repo.repo_id}/{quote(f.name)}")
            self._file_headers(repo, f)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = 0, f.size  # [start, end)
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip()) if rng else None
        if m and (int(m[1]) >= f.size or (m[2] and int(m[2]) < int(m[1]))):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{f.size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if m:
            start, end = int(m[1]), min(f.size, int(m[2]) + 1 if m[2] else f.size)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{f.size}")
        else:
            self.send_response(200)
        self._file_headers(repo, f)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if self.command == "GET":
            self._body(repo, f, start, end)

    def _file_headers(self, repo: _Repo, f: _File) -> None:
        self.send_header("X-Repo-Commit", repo.sha)
        self.send_header("ETag", f'"{f.etag}"')
        if f.lfs:
            self.send_header("X-Linked-Etag", f'"{f.etag}"')
            self.send_header("X-Linked-Size", str(f.size))

    def _body(self, repo: _Repo, f: _File, start: int, end: int) -> None:
        hub = self.hub
        key = (repo.repo_id, f.name)
        fail = hub._take_fail(key)
        stop = min(end, start + fail[0]) if fail else end
        sock = self.connection
        fh = open(f.path, "rb") if f.path is not None else None
        data = memoryview(f.data) if f.data is not None else None
        pos = start
        try:
            while pos < stop and not hub._closing.is_set():
                rate = hub._rate
                # Small chunks when throttled, so the rate is smooth and a kill lands mid-file.
                n = min(CHUNK if rate is None else max(1, rate // 20), stop - pos)
                if data is not None:
                    sent = self.wfile.write(data[pos : pos + n])
                else:
                    # sendfile: no copy through Python, so the fake hub is not the bottleneck.
                    assert fh is not None
                    sent = os.sendfile(sock.fileno(), fh.fileno(), pos, n)
                if sent == 0:
                    break
                hub._count(key, sent)
                pos += sent
                if rate is not None:
                    time.sleep(sent / rate)
        finally:
            if fh is not None:
                fh.close()
        if pos < end:
            # Short body (fail_after, or stop()): the client must see the connection end.
            self.close_connection = True
            if fail and fail[1]:
                # SO_LINGER 0 turns close() into a TCP RST: "connection reset by peer". (The fd
                # really closes once the handler drops its rfile.)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)


def _form(body: bytes, content_type: str) -> Dict[str, List[str]]:
    if content_type.startswith("application/json"):
        data = json.loads(body or b"{}")
        return {k: v if isinstance(v, list) else [v] for k, v in data.items()}
    return parse_qs(body.decode())
