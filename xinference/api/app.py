"""The FastAPI application: routers, error handlers, and the supervisor ref."""

from typing import Any

from fastapi import FastAPI

from .. import __version__
from .errors import install_error_handlers
from .ollama_models import OllamaModels
from .ollama_serving import OllamaServing
from .replicas import ReplicaRouter
from .retrieval_serving import RetrievalServing
from .routers import cluster, models, ollama, openai, registrations, retrieval
from .serving import LLMServing


def create_app(supervisor: Any, supervisor_address: str) -> FastAPI:
    app = FastAPI(
        title="Xinference",
        version=__version__,
        description="OpenAI- and Ollama-compatible inference and Xinference model management.",
    )
    app.state.supervisor = supervisor
    app.state.supervisor_address = supervisor_address
    app.state.router = ReplicaRouter(supervisor)
    app.state.serving = LLMServing(app.state.router)
    app.state.retrieval = RetrievalServing(app.state.router)
    app.state.ollama = OllamaServing(supervisor, app.state.serving, app.state.retrieval)
    app.state.ollama_models = OllamaModels(supervisor, app.state.router)
    install_error_handlers(app)
    app.include_router(cluster.router)
    app.include_router(models.router)
    app.include_router(registrations.router)
    app.include_router(openai.router)
    app.include_router(retrieval.router)
    app.include_router(ollama.router)
    return app
