"""Cluster endpoints: health, supervisor address, workers."""

import time

from fastapi import APIRouter, Request

from ... import __version__

router = APIRouter(tags=["Cluster"])


@router.get("/status", summary="Health check")
async def status(request: Request):
    return {"status": "ok", "version": __version__}


@router.get("/v1/address", summary="The supervisor's internal (xoscar) address")
async def address(request: Request):
    return request.app.state.supervisor_address


@router.get("/v1/cluster/auth", summary="Whether the cluster requires authentication")
async def auth(request: Request):
    return {"auth": request.app.state.auth is not None}


@router.get("/v1/cluster/version")
async def version():
    return {"version": __version__}


@router.get("/v1/workers", summary="Registered workers and their resources")
async def workers(request: Request):
    return await request.app.state.supervisor.list_workers()


@router.get("/v1/cluster/info", summary="Supervisor and workers")
async def cluster_info(request: Request):
    sup = request.app.state.supervisor
    info = await sup.cluster_info()
    nodes = [
        {
            "node_type": "Supervisor",
            "ip_address": info["address"].rsplit(":", 1)[0],
            "address": info["address"],
            "uptime": round(time.time() - info["started"], 1),
        }
    ]
    for w in await sup.list_workers():
        nodes.append(
            {
                "node_type": "Worker",
                "ip_address": w["node_ip"],
                "address": w["worker_address"],
                **w["status"],
            }
        )
    return nodes
