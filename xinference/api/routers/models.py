"""Xinference model management: launch, list, describe, terminate, scale, catalogue."""

from typing import Optional

from fastapi import APIRouter, Query, Request

from ...errors import InvalidRequestError
from ..auth.redact import events_for_caller, for_caller
from ..protocol.xinference import AddReplicasRequest, LaunchModelRequest
from . import supervisor

router = APIRouter(tags=["Models"])


def _launch_args(body: LaunchModelRequest) -> dict:
    """The supervisor's launch request; it checks the model type, the envs and the rest
    of what a launch plan needs (model/plans.py, model/launch_env.py)."""
    unsupported = {
        "n_worker": body.n_worker not in (None, 1),
        "replica_config": bool(body.replica_config),
        "enable_virtual_env": bool(body.enable_virtual_env),
        "virtual_env_packages": bool(body.virtual_env_packages),
    }
    for key, bad in unsupported.items():
        if bad:
            raise InvalidRequestError(f"{key} is not supported by this server.", param=key)
    if isinstance(body.n_gpu, str) and body.n_gpu != "auto":
        raise InvalidRequestError("n_gpu must be an integer, \"auto\" or null.", param="n_gpu")
    return {
        "model_type": body.model_type,
        "model_uid": body.model_uid,
        "model_name": body.model_name,
        "model_engine": body.model_engine,
        "model_format": body.model_format,
        "model_size_in_billions": body.model_size_in_billions,
        "quantization": body.quantization,
        "model_path": body.model_path,
        "replica": body.replica,
        "worker_ip": body.worker_ip,
        "request_limits": body.request_limits,
        "n_gpu": body.n_gpu,
        "env": body.envs,
        "download_hub": body.download_hub,
        # LoRA adapters (lora_list): checked by the launch plan, never an engine kwarg
        "peft_model_config": body.peft_model_config,
        "engine_kwargs": body.engine_kwargs(),
    }


@router.post("/v1/models", summary="Launch a model")
async def launch_model(body: LaunchModelRequest, request: Request, wait_ready: bool = True):
    uid = await supervisor(request).launch_model(_launch_args(body), wait_ready)
    # The new uid and adapter names may be strings that resolved elsewhere until now.
    request.app.state.replicas.forget_names()
    return {"model_uid": uid}


@router.get("/v1/models", summary="List running models and their LoRA adapters")
async def list_models(request: Request):
    # A LoRA adapter is listed as a model of its own (select it with model=<lora_name>),
    # with `parent` naming the model that serves it.
    models = await supervisor(request).list_models()
    return for_caller({
        "object": "list",
        "data": [
            {"id": uid, "object": "model", "created": d["created"], "owned_by": "xinference", **d}
            for uid, d in models.items()
        ],
    })


@router.get("/v1/models/instances", summary="Running model instances")
async def instances(
    request: Request, model_name: Optional[str] = None, model_uid: Optional[str] = None
):
    models = await supervisor(request).list_models()
    rows = []
    for uid, d in models.items():
        if d.get("parent"):
            continue  # a LoRA adapter: an instance only as part of its parent
        if model_uid and uid != model_uid:
            continue
        if model_name and d["model_name"] != model_name:
            continue
        rows.append(
            {
                "model_name": d["model_name"],
                "model_uid": uid,
                "model_version": (
                    f"{d['model_name']}--{d['model_size_in_billions']}B-{d['model_format']}-{d['quantization']}"
                    if d["model_type"] == "LLM" else d["model_name"]),
                "model_ability": d["model_ability"],
                "replica": d["replica"],
                "status": d["status"],
                "instance_created_ts": d["created"],
            }
        )
    return rows


@router.get("/v1/models/{model_uid}", summary="Describe a running model")
async def describe_model(model_uid: str, request: Request):
    desc = await supervisor(request).describe_model(model_uid)
    if desc.get("status") == "READY":
        # Live load from the replicas themselves: slots busy/free, queue length.
        desc.update(await request.app.state.replicas.load(model_uid))
    return for_caller(desc)


@router.delete("/v1/models/{model_uid}", summary="Terminate a model")
async def terminate_model(model_uid: str, request: Request):
    await supervisor(request).terminate_model(model_uid)
    request.app.state.replicas.invalidate(model_uid)
    return None


@router.get("/v1/models/{model_uid}/progress",
            summary="Launch progress: 0 to 1, the stage, and per replica the download's bytes and speed")
async def progress(model_uid: str, request: Request):
    return for_caller(await supervisor(request).model_progress(model_uid))


@router.post("/v1/models/{model_uid}/cancel", summary="Cancel a launch in any stage, download included")
async def cancel_launch(model_uid: str, request: Request):
    await supervisor(request).cancel_launch(model_uid)
    request.app.state.replicas.invalidate(model_uid)
    return None


@router.get("/v1/models/{model_uid}/replicas", summary="Requests in flight and served, per replica")
async def replicas(model_uid: str, request: Request):
    return for_caller(await request.app.state.replicas.stats(model_uid))


@router.post("/v1/models/{model_uid}/replicas",
             summary="Start more replicas of a running model; they serve once loaded")
async def add_replicas(model_uid: str, body: AddReplicasRequest, request: Request):
    out = await supervisor(request).add_replicas(model_uid, body.count, body.worker_ip)
    await request.app.state.replicas.refresh(model_uid)
    return out


@router.delete("/v1/models/{model_uid}/replicas/{replica_id}",
               summary="Stop one replica: out of routing at once, stopped once its requests finish")
async def remove_replica(model_uid: str, replica_id: str, request: Request,
                         drain_timeout: float = Query(30.0, ge=0, le=3600)):
    if len(replica_id) > 256:
        raise InvalidRequestError("replica_id is too long.", param="replica_id")
    replicas = request.app.state.replicas
    replicas.exclude(model_uid, replica_id)  # no new request goes there from now on
    try:
        return await supervisor(request).remove_replica(model_uid, replica_id, drain_timeout)
    finally:
        await replicas.refresh(model_uid)


@router.get("/v1/models/{model_uid}/events",
            summary="The model's history: replicas that crashed or lost their worker, relaunches")
async def events(model_uid: str, request: Request):
    return {"object": "list", "data": events_for_caller(await supervisor(request).model_events(model_uid))}


@router.get("/v1/engines/{model_name}", summary="Engines that can run a model")
async def engines(model_name: str, request: Request):
    return await supervisor(request).query_engines(model_name)


@router.get("/v1/engines/{model_type}/{model_name}", include_in_schema=False)
async def engines_typed(model_type: str, model_name: str, request: Request):
    if model_type.lower() != "llm":
        raise InvalidRequestError(f"Unsupported model type {model_type!r}.", param="model_type")
    return await supervisor(request).query_engines(model_name)
