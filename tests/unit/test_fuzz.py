"""A bounded fuzz run over /openapi.json: schemathesis makes requests from every
operation's schema, valid and invalid ones, and sends them to the REST app over the
fake cluster (tests/unit/fake_cluster.py); no answer may be a 5xx.

Bounded: a few examples per operation, with a fixed seed, so a run takes well under
a minute and fails the same way twice. Nothing is excluded: the fake worker launches
echo replicas, and registrations persist under a temporary XINFERENCE_HOME. Half of
the bodies that name a model name a running one, so that generation requests get
past "model not found" to the serving code (but for /api/delete, which would end it).
"""

import asyncio
import json
import threading
from typing import Any, Coroutine, Dict, Iterator, TypeVar

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.unit.fake_cluster import Stack, running_stack

pytestmark = pytest.mark.slow  # ~15 s: `pytest tests/unit -m "not slow"` leaves it out

T = TypeVar("T")
EXAMPLES = 6
RUNNING = "m"
# what schemathesis' transport arguments may carry that httpx takes
HTTPX_ARGS = ("method", "url", "headers", "params", "json", "content", "data", "files")


class LoopThread:
    """The fake cluster on an event loop of its own, in a thread: hypothesis runs each
    example synchronously, and the app's actor refs must stay on the loop that made them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(_cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _cancel_the_rest() -> None:
    """Ends what the pool left running (its watchers) before the loop closes."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


def _httpx_args(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """schemathesis' transport arguments as httpx takes them (raw bodies as content,
    cookies as a header), aimed at the running model half of the time."""
    request = {k: v for k, v in kwargs.items() if k in HTTPX_ARGS}
    body = request.get("json")
    aim = isinstance(body, dict) and "model" in body and not request["url"].endswith("/api/delete")
    if aim and len(json.dumps(body, default=str)) % 2 == 0:  # the same choice on a replay
        request["json"] = {**body, "model": RUNNING}
    if isinstance(request.get("data"), (str, bytes)):
        request["content"] = request.pop("data")
    cookies = kwargs.get("cookies")
    if cookies:
        request["headers"] = {**request.get("headers", {}),
                              "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    return request


class Target:
    """The app to fuzz, and a way to send it a request from a synchronous test."""

    def __init__(self, loop: LoopThread, stack: Stack):
        self.app = stack.app
        self._loop = loop
        self._http = stack.http

    def send(self, kwargs: Dict[str, Any]) -> httpx.Response:
        return self._loop.run(self._http.request(**_httpx_args(kwargs)))


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Iterator[Target]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XINFERENCE_HOME", str(tmp_path_factory.mktemp("fuzz-home")))
        loop = LoopThread()
        stack_cm = running_stack()
        try:
            stack = loop.run(stack_cm.__aenter__())
            loop.run(stack.supervisor.launch_model({"model_name": "gemma-3", "model_uid": RUNNING}))
            yield Target(loop, stack)
            loop.run(stack_cm.__aexit__(None, None, None))
        finally:
            loop.close()


@pytest.fixture(scope="module")
def api_schema(target: Target):
    return schemathesis.openapi.from_dict(target.app.openapi())


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.timeout(120)
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_operation_answers_with_a_server_error(case, target: Target):
    response = target.send(case.as_transport_kwargs(base_url="http://127.0.0.1"))
    case.validate_response(response, checks=[not_a_server_error])
