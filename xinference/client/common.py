"""Helpers shared by the client's handles: error text and SSE parsing."""

import json
from typing import Any, Iterator

import requests


def error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            return body["detail"]
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return f"HTTP {response.status_code}: {body}"


class APIError(RuntimeError):
    """An error answer from the server; the message reads like xinference-client's."""

    def __init__(self, what: str, status_code: int, detail: str):
        super().__init__(f"Failed to {what}, detail: {detail}")
        self.status_code = status_code
        self.detail = detail


def check(response: requests.Response, what: str) -> None:
    if response.status_code >= 400:
        raise APIError(what, response.status_code, error_text(response))


def iter_sse(response: requests.Response) -> Iterator[Any]:
    """Yields the JSON payloads of `data:` lines until `[DONE]`; raises on an error event."""
    try:
        for raw in response.iter_lines():
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[len(b"data:"):].strip()
            if data == b"[DONE]":
                return
            obj = json.loads(data.decode("utf-8"))
            if isinstance(obj, dict) and obj.get("error") is not None:
                err = obj["error"]
                raise RuntimeError(err.get("message") if isinstance(err, dict) else str(err))
            yield obj
    finally:
        response.close()
