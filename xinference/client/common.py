"""Helpers shared by both clients and their handles: error text and SSE parsing."""

import json
from typing import Any, Iterator, Union

import requests


def error_text(response: Any) -> str:
    """The server's reason, from a `requests` or an `httpx` response (read already)."""
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


def check(response: Any, what: str) -> None:
    if response.status_code >= 400:
        raise APIError(what, response.status_code, error_text(response))


# What `sse_payload` returns for a line that is not an event, and for the end of the stream.
SKIP = object()
DONE = object()


def sse_payload(raw: Union[bytes, str]) -> Any:
    """The JSON payload of one SSE line, SKIP or DONE; raises on an error event, which
    the server sends when it fails after the 200 status went out."""
    line = (raw.decode("utf-8") if isinstance(raw, bytes) else raw).strip()
    if not line.startswith("data:"):
        return SKIP
    data = line[len("data:"):].strip()
    if data == "[DONE]":
        return DONE
    obj = json.loads(data)
    if isinstance(obj, dict) and obj.get("error") is not None:
        err = obj["error"]
        raise RuntimeError(err.get("message") if isinstance(err, dict) else str(err))
    return obj


def iter_sse(response: requests.Response) -> Iterator[Any]:
    """Yields the JSON payloads of `data:` lines until `[DONE]`; raises on an error event."""
    try:
        for raw in response.iter_lines():
            obj = sse_payload(raw)
            if obj is DONE:
                return
            if obj is not SKIP:
                yield obj
    finally:
        response.close()
