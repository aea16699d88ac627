"""The FastAPI application: routers, error handlers, and the supervisor ref."""

from typing import Optional

from fastapi import FastAPI

from .. import __version__
from ..core.supervisor_api import SupervisorAPI
from .auth.middleware import AuthMiddleware
from .auth.principal import Authenticator
from .auth.quotas import Quotas
from .errors import install_error_handlers
from .gateway import Gateway
from .inflight import InFlightRequests
from .metrics import Metrics
from .middleware import install_middleware
from .observe import RequestObservers
from .ollama_models import OllamaModels
from .ollama_serving import OllamaServing
from .openai_serving import OpenAIServing
from .replicas import ReplicaBalancer
from .retrieval_serving import RetrievalServing
from .routers import auth, cluster, models, ollama, openai, registrations, retrieval
from .routers import metrics as metrics_routes
from .routers import requests as requests_routes
from .settings import ServerSettings
from .tracking import RequestTracking


def create_app(supervisor: SupervisorAPI, supervisor_address: str, settings: Optional[ServerSettings] = None) -> FastAPI:
    settings = settings or ServerSettings()
    app = FastAPI(
        title="Xinference",
        version=__version__,
        description="OpenAI- and Ollama-compatible inference and Xinference model management.",
    )
    app.state.settings = settings
    app.state.auth = Authenticator(settings.auth) if settings.auth is not None else None
    app.state.quotas = Quotas()
    app.state.supervisor = supervisor
    app.state.supervisor_address = supervisor_address
    # what DELETE /v1/clusters calls once the cluster is stopped: the daemon serving this
    # app sets it to end itself; an app served in-process (tests) stays up
    app.state.request_exit = None
    app.state.replicas = ReplicaBalancer(supervisor)
    gateway = Gateway(app.state.replicas)
    app.state.openai = OpenAIServing(gateway)
    app.state.retrieval = RetrievalServing(gateway)
    app.state.ollama = OllamaServing(gateway, app.state.retrieval, supervisor)
    app.state.ollama_models = OllamaModels(supervisor, app.state.replicas)
    # every inference request's end goes to these (metrics; per-key usage)
    app.state.observers = RequestObservers()
    app.state.inflight = InFlightRequests()
    app.state.metrics = Metrics(supervisor, app.state.replicas)
    app.state.observers.add(app.state.metrics.observe)
    app.state.observers.add(app.state.quotas.observe)
    install_error_handlers(app)
    app.include_router(auth.router)
    app.include_router(cluster.router)
    app.include_router(models.router)
    app.include_router(registrations.router)
    app.include_router(openai.router)
    app.include_router(retrieval.router)
    app.include_router(ollama.router)
    app.include_router(metrics_routes.router)
    app.include_router(requests_routes.router)
    # innermost: it sees the answers of the exception handlers and the end of each stream
    app.add_middleware(RequestTracking, observers=app.state.observers, inflight=app.state.inflight)
    if app.state.auth is not None:
        app.add_middleware(AuthMiddleware, owner=app, auth=app.state.auth, quotas=app.state.quotas)
    # last: these run before authentication (a refused browser learns nothing more)
    install_middleware(app, settings)
    return app
