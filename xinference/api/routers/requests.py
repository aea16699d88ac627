"""Stopping a request by its id (the X-Request-Id header or the body's request_id)."""

from typing import Optional

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

router = APIRouter(tags=["Models"])


class AbortRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # seconds during which a request arriving with this id is aborted at once (it may
    # reach the server after the abort did); 0: no blocking
    block_duration: float = Field(default=30, ge=0, le=86400)


@router.post("/v1/models/{model_uid}/requests/{request_id}/abort",
             summary="Abort a running request by id (a no-op if it finished or is unknown)")
async def abort_request(model_uid: str, request_id: str, request: Request,
                        body: Optional[AbortRequest] = None):
    # describe: 404 for a model that does not exist; an adapter's name means its base model
    desc = await request.app.state.supervisor.describe_model(model_uid)
    block = AbortRequest() if body is None else body
    request.app.state.inflight.abort(desc["model_uid"], request_id, block.block_duration)
    return {}
