"""Cluster endpoints: health, supervisor address, workers."""

import asyncio
import time

from fastapi import APIRouter, Request

from ... import __version__
from . import supervisor

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
    return await supervisor(request).list_workers()


@router.get("/v1/cluster/info", summary="Supervisor and workers")
async def cluster_info(request: Request):
    sup = supervisor(request)
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


@router.delete("/v1/clusters", summary="Stop the whole cluster: every model (forgotten, not restored), "
               "every worker, then this server")
async def stop_cluster(request: Request):
    stopped = await supervisor(request).stop_cluster()
    exit_ = request.app.state.request_exit
    if exit_ is not None:
        # after this answer has gone out: the daemon stops its REST server and actor pool
        asyncio.get_running_loop().call_later(0.5, exit_)
    return {"result": True, **stopped}
