"""Stopping a request by its id (the X-Request-Id header or the body's request_id)."""

from typing import Optional

from fastapi import APIRouter, Path, Request

from ..protocol.xinference import AbortRequest
from . import supervisor

router = APIRouter(tags=["Models"])


@router.post("/v1/models/{model_uid}/requests/{request_id}/abort",
             summary="Abort a running request by id (a no-op if it finished or is unknown)")
async def abort_request(model_uid: str, request: Request,
                        # as long as an id the server would take from X-Request-Id or a body:
                        # blocked ids are kept, so an unbounded one would cost memory
                        request_id: str = Path(max_length=128),
                        body: Optional[AbortRequest] = None):
    # describe: 404 for a model that does not exist; an adapter's name means its base model
    desc = await supervisor(request).describe_model(model_uid)
    block = AbortRequest() if body is None else body
    request.app.state.inflight.abort(desc["model_uid"], request_id, block.block_duration)
    return {}
