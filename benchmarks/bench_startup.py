"""`xinference-local` start-to-ready and model launch-to-ready, over fresh servers.

Each round starts a new server (own session, XOSCAR_DIR in a temp dir) and measures:
  server start   process spawn -> first `GET /status` 200
  launch (wait)  `POST /v1/models` with wait_ready=true -> response
  launch (poll)  `POST /v1/models?wait_ready=false` -> `GET /v1/models/{uid}` READY
The model is terminated between the two launches; the server group is killed at the
end of each round. The GGUF file is in the page cache after the first load, so these
are warm-disk numbers.
"""

import argparse
import os
import statistics
import time
from typing import Dict, List

import httpx
from _local import LocalServer, exit_on_sigterm, launch, table, wait_model_ready

STEPS = ("server start", "launch (wait_ready=true)", "launch (wait_ready=false, polled)")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="fresh servers to start")
    p.add_argument("--model", default="gemma-3")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="n_threads")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per step before giving up")
    return p.parse_args()


def one_round(args: argparse.Namespace, i: int) -> Dict[str, float]:
    out: Dict[str, float] = {}
    with LocalServer() as server:
        out[STEPS[0]] = server.wait_ready(args.timeout)
        body = {"model_name": args.model, "n_ctx": args.n_ctx, "n_threads": args.threads}
        with httpx.Client(base_url=server.url, timeout=args.timeout) as c:
            t0 = time.perf_counter()
            uid = launch(c, server.url, {**body, "model_uid": f"wait-{i}"})
            out[STEPS[1]] = time.perf_counter() - t0
            r = c.delete(f"/v1/models/{uid}")
            if r.status_code >= 400:
                raise RuntimeError(f"terminate failed: {r.status_code} {r.text}")

            t0 = time.perf_counter()
            uid = launch(c, server.url, {**body, "model_uid": f"poll-{i}"}, wait_ready=False)
            wait_model_ready(c, server.url, uid, args.timeout)
            out[STEPS[2]] = time.perf_counter() - t0
    return out


def main() -> None:
    args = parse_args()
    exit_on_sigterm()
    print(f"model={args.model} n_threads={args.threads} n_ctx={args.n_ctx} rounds={args.rounds}")
    samples: Dict[str, List[float]] = {s: [] for s in STEPS}
    for i in range(args.rounds):
        got = one_round(args, i)
        for step, secs in got.items():
            samples[step].append(secs)
        print(f"round {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in got.items()), flush=True)

    rows = [
        [step, f"{min(v):.2f}", f"{statistics.median(v):.2f}", f"{max(v):.2f}"]
        for step, v in samples.items()
    ]
    print(f"\nStartup, seconds ({args.rounds} rounds, a fresh server each)")
    print(table(["step", "min", "median", "max"], rows))


if __name__ == "__main__":
    main()
