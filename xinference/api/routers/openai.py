"""OpenAI-compatible inference endpoints."""

from fastapi import APIRouter, Request

from ..protocol.openai import ChatCompletionRequest, CompletionRequest

router = APIRouter(tags=["OpenAI"])


@router.post("/v1/chat/completions", summary="Create a chat completion")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    return await request.app.state.openai.chat(body, request)


@router.post("/v1/completions", summary="Create a completion")
async def completions(body: CompletionRequest, request: Request):
    return await request.app.state.openai.completion(body, request)
