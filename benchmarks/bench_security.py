"""What the request layers added by issue 17 cost per request, in process.

The real REST app and SupervisorActor over fake replicas that answer at once
(tests/unit/fake_cluster.py), driven through httpx's ASGI transport: no sockets, no
engine, so what is timed is the REST path itself. Three apps, interleaved round by round:

  bare     the app with no user middleware at all (routing, validation, serving)
  default  what every server runs: request ids, Host/Origin guard, CORS, body guard,
           request tracking (metrics, abort registry)
  auth     default + --auth-config: an API key checked, its quota counted, usage
           recorded

Each round sends --requests non-streamed chat completions, then as many streamed ones,
one at a time, to each app in turn (the order rotates). Printed: microseconds per request
per app, and the ratios default/bare and auth/bare, min/median/max over the rounds.

    python benchmarks/bench_security.py                 # 7 rounds x 300 requests
    python benchmarks/bench_security.py --rounds 3 --requests 100
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("XOSCAR_DIR", tempfile.mkdtemp(prefix="xo-bench-"))

import httpx  # noqa: E402

from xinference.api.app import create_app  # noqa: E402
from xinference.api.auth.config import AuthConfig  # noqa: E402
from xinference.api.settings import ServerSettings  # noqa: E402

KEY = "sk-bench-0000001"
AUTH = AuthConfig.model_validate({
    "auth_config": {"secret_key": "bench-secret-0123456789abcdef"},
    "user_config": [{"username": "u", "password": "p", "permissions": ["admin"], "api_keys": [KEY]}],
})
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


async def _time(http: httpx.AsyncClient, n: int, stream: bool, headers: dict) -> float:
    body = {**CHAT, "stream": stream}
    t0 = time.perf_counter()
    for _ in range(n):
        r = await http.post("/v1/chat/completions", json=body, headers=headers)
        if r.status_code != 200:
            raise SystemExit(f"unexpected answer {r.status_code}: {r.text}")
    return (time.perf_counter() - t0) / n * 1e6


async def main(rounds: int, requests: int) -> None:
    from tests.unit.fake_cluster import running_stack

    async with running_stack() as stack:
        r = await stack.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "m"})
        assert r.status_code == 200, r.text
        apps = {"bare": create_app(stack.supervisor, stack.address),
                "default": create_app(stack.supervisor, stack.address),
                "auth": create_app(stack.supervisor, stack.address, ServerSettings(auth=AUTH))}
        apps["bare"].user_middleware.clear()  # Starlette builds the stack on the first call
        clients = {name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
                   for name, app in apps.items()}
        headers = {"bare": {}, "default": {}, "auth": {"Authorization": f"Bearer {KEY}"}}
        names = list(apps)
        for name in names:  # warm-up
            await _time(clients[name], 20, False, headers[name])
            await _time(clients[name], 20, True, headers[name])
        results = {(name, s): [] for name in names for s in (False, True)}
        for rnd in range(rounds):
            order = names[rnd % 3:] + names[:rnd % 3]
            for stream in (False, True):
                for name in order:
                    results[(name, stream)].append(await _time(clients[name], requests, stream, headers[name]))
        for c in clients.values():
            await c.aclose()

    def mmm(xs):
        return f"{min(xs):8.1f} {statistics.median(xs):8.1f} {max(xs):8.1f}"

    print(f"{rounds} rounds x {requests} requests each; microseconds per request (min median max)")
    for stream in (False, True):
        kind = "streamed" if stream else "non-streamed"
        for name in names:
            print(f"  {kind:13s} {name:8s} {mmm(results[(name, stream)])}")
        for name in ("default", "auth"):
            ratios = [a / b for a, b in zip(results[(name, stream)], results[("bare", stream)])]
            print(f"  {kind:13s} {name}/bare ratio {min(ratios):.3f} {statistics.median(ratios):.3f} "
                  f"{max(ratios):.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    asyncio.run(main(args.rounds, args.requests))
