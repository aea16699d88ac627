"""Prometheus metrics of this REST server and the cluster behind it."""

from fastapi import APIRouter, Request, Response

from ..metrics import CONTENT_TYPE

router = APIRouter(tags=["Metrics"])


@router.get("/metrics", summary="Prometheus metrics (text format)")
async def metrics(request: Request) -> Response:
    return Response(await request.app.state.metrics.render(), media_type=CONTENT_TYPE)
