"""Model families (builtin and registered) and each worker's download cache."""

from typing import Optional

from fastapi import APIRouter, Query, Request

from ..protocol.xinference import RegisterModelRequest
from . import supervisor

router = APIRouter(tags=["Registrations and cache"])


@router.get("/v1/model_registrations/{model_type}", summary="Model families, builtin and registered")
async def registrations(model_type: str, request: Request, detailed: bool = Query(False)):
    return await supervisor(request).list_model_registrations(model_type, detailed)


@router.get("/v1/model_registrations/{model_type}/{model_name}", summary="One model family")
async def registration(model_type: str, model_name: str, request: Request):
    return await supervisor(request).get_model_registration(model_type, model_name)


@router.post("/v1/model_registrations/{model_type}", summary="Register a custom model")
async def register(model_type: str, body: RegisterModelRequest, request: Request):
    await supervisor(request).register_model(model_type, body.model, body.persist, body.worker_ip)
    return None


@router.delete("/v1/model_registrations/{model_type}/{model_name}", summary="Unregister a custom model")
async def unregister(model_type: str, model_name: str, request: Request):
    await supervisor(request).unregister_model(model_type, model_name)
    return None


@router.get("/v1/cache/models", summary="Model versions each worker has downloaded")
async def cached(request: Request, model_name: Optional[str] = None, worker_ip: Optional[str] = None):
    return {"list": await supervisor(request).list_cached_models(model_name, worker_ip)}


@router.get("/v1/cache/models/files", summary="The files removing a cached model version deletes")
async def cached_files(request: Request, model_version: str = Query(..., min_length=1),
                       worker_ip: Optional[str] = None):
    paths = await supervisor(request).list_deletable_models(model_version, worker_ip)
    return {"model_version": model_version, "worker_ip": worker_ip, "paths": paths}


@router.delete("/v1/cache/models", summary="Remove a cached model version (not while it runs)")
async def remove_cached(request: Request, model_version: str = Query(..., min_length=1),
                        worker_ip: Optional[str] = None):
    return {"result": await supervisor(request).confirm_and_remove_model(model_version, worker_ip)}
