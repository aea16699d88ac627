"""Ollama's model management on a cluster: /api/tags, /api/ps, /api/show, /api/pull,
/api/delete.

Ollama's local models are this cluster's running ones. `pull` of a builtin family
launches it (default spec, model uid = the name) and reports the launch's progress;
`delete` terminates. Everything goes through the supervisor, as the /v1/models routes do.
"""

import asyncio
from typing import Any, AsyncIterator, Dict, Optional, Tuple

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..core.supervisor_api import SupervisorAPI
from ..errors import ConflictError, LaunchFailedError, ModelNotFoundError, XinferenceError
from .errors import unexpected
from .gateway import unless_disconnected
from .ollama_serving import named_model
from .protocol.ollama import (
    NDJSON,
    NEVER_EXPIRES,
    OllamaModelRequest,
    capabilities,
    model_details,
    model_entry,
    model_info,
    model_uid,
    ndjson,
)
from .protocol.progress import download_summary
from .replicas import ReplicaBalancer

# Model types Ollama's API has a use for (it has no rerank).
LISTED_TYPES = ("LLM", "embedding")
PULL_POLL_S = 0.5


class OllamaModels:
    def __init__(self, supervisor: SupervisorAPI, replicas: ReplicaBalancer):
        self._supervisor = supervisor
        self._replicas = replicas

    async def _listed(self) -> Dict[str, Dict[str, Any]]:
        models = await self._supervisor.list_models()
        return {uid: d for uid, d in models.items() if d.get("model_type") in LISTED_TYPES}

    async def tags(self) -> Dict[str, Any]:
        rows = [model_entry(uid, d) for uid, d in (await self._listed()).items()]
        return {"models": sorted(rows, key=lambda r: r["modified_at"], reverse=True)}

    async def ps(self) -> Dict[str, Any]:
        rows = []
        for uid, d in (await self._listed()).items():
            if d.get("status") != "READY":
                continue
            entry = model_entry(uid, d)
            on_gpu = await self._on_gpu(uid)
            entry.update(expires_at=NEVER_EXPIRES, size_vram=entry["size"] if on_gpu else 0,
                         context_length=d.get("context_length") or d.get("max_tokens"))
            rows.append(entry)
        return {"models": rows}

    async def _on_gpu(self, uid: str) -> bool:
        try:
            device = (await self._replicas.load(uid)).get("device")
        except XinferenceError:
            return False
        return str(device or "").startswith("cuda")

    async def show(self, req: OllamaModelRequest) -> Dict[str, Any]:
        name = req.model_name
        with named_model(name):
            desc = await self._supervisor.describe_model(model_uid(name))
        template, stops = "", []
        if desc.get("model_type") == "LLM":
            family = await self._supervisor.get_model_registration("LLM", desc["model_name"])
            template, stops = family.get("chat_template") or "", list(family.get("stop") or [])
        context = desc.get("context_length") or desc.get("max_tokens")
        parameters = [f'stop "{s}"' for s in stops] + ([f"num_ctx {context}"] if context else [])
        return {
            "modelfile": f"# Served by Xinference as model {model_uid(name)}\nFROM {desc.get('model_name')}\n",
            "parameters": "\n".join(parameters),
            "template": template,
            "details": model_details(desc),
            "model_info": model_info(desc),
            "capabilities": capabilities(desc),
            "modified_at": model_entry(model_uid(name), desc)["modified_at"],
        }

    async def delete(self, req: OllamaModelRequest) -> None:
        uid = model_uid(req.model_name)
        with named_model(req.model_name):
            await self._supervisor.terminate_model(uid)
        self._replicas.invalidate(uid)

    # ---- pull --------------------------------------------------------------------------

    async def pull(self, req: OllamaModelRequest, http: Request):
        """Launches the family `name` as model `name` unless it runs already, then
        reports the launch: NDJSON lines as it goes (the default), or one object at the end."""
        name = req.model_name
        uid = model_uid(name)
        await self._start(uid, name)
        lines = self._progress(uid, name)
        if req.stream is not False:
            return StreamingResponse(_ndjson_lines(lines), media_type=NDJSON)

        async def last_line() -> Dict[str, Any]:
            last: Dict[str, Any] = {}
            async for line in lines:
                last = line
            return last

        # a client that gives up stops the waiting; the launch itself goes on
        return JSONResponse(await unless_disconnected(http, last_line()))

    async def _start(self, uid: str, name: str) -> None:
        if uid in await self._supervisor.list_models():
            return  # running or loading: report on it
        model_type = await self._family_type(uid)
        if model_type is None:
            raise ModelNotFoundError(
                f"model '{name}' not found: pull takes the name of a builtin model "
                "(GET /v1/model_registrations/LLM lists them).", param="model")
        try:
            await self._supervisor.launch_model(
                {"model_type": model_type, "model_name": uid, "model_uid": uid}, False)
        except ConflictError:
            return  # another pull launched it a moment ago
        # the new uid may be a string that resolved to another model until now
        self._replicas.forget_names()

    async def _family_type(self, name: str) -> Optional[str]:
        for model_type in LISTED_TYPES:
            rows = await self._supervisor.list_model_registrations(model_type)
            if any(r["model_name"] == name for r in rows):
                return model_type
        return None

    async def _progress(self, uid: str, name: str) -> AsyncIterator[Dict[str, Any]]:
        """Ollama's pull lines: bytes while the weights download (`completed`/`total`),
        then percent while the replicas load, then success."""
        yield {"status": "pulling manifest"}
        reported: Optional[Tuple[str, int, int]] = None
        while True:
            try:
                status = (await self._supervisor.describe_model(uid))["status"]
                report = await self._supervisor.model_progress(uid)
            except ModelNotFoundError as e:  # the launch failed and was undone: say why
                cause = await self._supervisor.launch_error(uid)
                raise (cause or LaunchFailedError(e.message)) from None
            line = _pull_line(name, report, status == "READY")
            key = (line["status"], line.get("completed", 0), line.get("total", 0))
            if key != reported:
                yield line
                reported = key
            if status == "READY":
                break
            await asyncio.sleep(PULL_POLL_S)
        yield {"status": "success"}


def _pull_line(name: str, report: Dict[str, Any], ready: bool) -> Dict[str, Any]:
    download = None if ready else download_summary(report)
    if download is not None:
        repo = next((r["download"].get("repo") for r in report.get("replicas", [])
                     if r.get("download")), name)
        return {"status": f"pulling {repo}", "digest": f"{repo}", "completed": download["downloaded_bytes"],
                "total": download["total_bytes"]}
    done = 100 if ready else round(100 * report.get("progress", 0.0))
    return {"status": f"loading {name}", "completed": done, "total": 100}


async def _ndjson_lines(items: AsyncIterator[Dict[str, Any]]) -> AsyncIterator[str]:
    try:
        async for item in items:
            yield ndjson(item)
    except XinferenceError as e:  # the status line went out already: say it in the stream
        yield ndjson({"error": e.message})
    except Exception as e:  # never a silently cut stream
        yield ndjson({"error": unexpected(e, "a pull stream failed mid-way").message})
