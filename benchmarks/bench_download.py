"""Our hub download against a plain `huggingface_hub.hf_hub_download`, and the worker's
heartbeats while a launch downloads. Everything goes to a fake Hugging Face hub on
127.0.0.1 (`tests/fake_hub.py`); no network.

1. Throughput. A random file of `--size-mb` MB (10^6 bytes) served by the fake hub at
   full speed. Each round runs one fresh child process per side (so neither warms the
   other's imports or caches), each with a fresh HF_HOME and XINFERENCE_HOME and its own
   empty target folder, after a `--settle` pause; the order rotates every round, so in
   3 rounds each side runs once first, once second and once last (a first version had
   no pause and only reversed the order, which kept ours in the middle: the first side
   of a round ran ~1.5x faster than the last, and the ratios swung with the order):
     plain        `hf_hub_download(repo, file, local_dir=...)`
     ours         `fetch_weights(WeightsRequest(kind="file", ...), DownloadProgress())`:
                  listing with hashes, file lock, download in 1 MiB steps with the
                  progress poller running, size and sha256 check, completion record
     ours-nohash  the same with `cache.sha256_of` answering the known hash (the only
                  change), so that ours - ours-nohash is what the verification costs;
                  the child then times the real `sha256_of` on the downloaded file
   Only the download call is timed (imports are printed apart). Printed: MB/s per side
   and the per-round ratios to plain, min/median/max, with the CPU time of each side's
   child and of the fake hub, and how fast each place in the round ran (a check on the
   order's fairness).

2. Heartbeats. A fresh `xinference-local` (XINFERENCE_HEARTBEAT_INTERVAL=1, its own
   XINFERENCE_HOME, HF_ENDPOINT = the fake hub) and a custom LLM registered on a fake
   repo that serves the embedded Gemma GGUF. `GET /v1/workers` is sampled every 0.2 s
   for `--hb-seconds` with nothing running (idle), then for as long while a launch of
   that model downloads through a throttled hub; printed: `seconds_since_heartbeat`
   (the supervisor's view of the worker's last heartbeat) p50/max idle against
   downloading, and the latency of `GET /v1/workers` and `GET /v1/models/{uid}/progress`.
   The launch is then cancelled and the server's process group killed.

    python benchmarks/bench_download.py              # 6 rounds x 300 MB, then heartbeats
    python benchmarks/bench_download.py --quick      # 1 round x 100 MB, 8 s of heartbeats
"""

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import httpx
from _local import LocalServer, exit_on_sigterm, percentile, table

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("plain", "ours", "ours-nohash")
REPO = "bench/download-GGUF"
FILE = "bench-q4_k_m.gguf"
HB_REPO = "bench/heartbeat-GGUF"
HB_MODEL = "bench-download-llm"
HB_UID = "bench-download"
MB = 1e6


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=6,
                   help="throughput rounds (each side once per round; the order rotates)")
    p.add_argument("--warmup", type=int, default=1, help="uncounted throughput rounds first")
    p.add_argument("--size-mb", type=int, default=300, help="size of the random file, MB")
    p.add_argument("--hb-seconds", type=float, default=20.0,
                   help="sampling window for heartbeats, idle and while downloading")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-heartbeat", action="store_true")
    p.add_argument("--settle", type=float, default=1.0,
                   help="pause before each side, seconds (memory the last one freed settles)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per child / per step")
    p.add_argument("--quick", action="store_true", help="1 round, 100 MB, no warm-up, 8 s of heartbeats")
    # internal: one side's download in a child process
    p.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--dest", help=argparse.SUPPRESS)
    p.add_argument("--sha256", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup, args.size_mb, args.hb_seconds = 1, 0, 100, 8.0
    return args


# ---- the child: one download, timed -------------------------------------------------------


def cpu_s() -> float:
    """CPU seconds of this process, all threads, user + system (page-cache writes)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child(args: argparse.Namespace) -> None:
    """Prints one JSON line: import and download seconds (and the sha256 time)."""
    out: Dict[str, float] = {}
    t0 = time.perf_counter()
    if args.child == "plain":
        from huggingface_hub import hf_hub_download

        out["import_s"] = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), cpu_s()
        path = hf_hub_download(REPO, FILE, local_dir=args.dest)
        out["download_s"], out["cpu_s"] = time.perf_counter() - t0, cpu_s() - c0
    else:
        # what fetch_weights imports lazily, imported here so that only the call is timed
        import filelock  # noqa: F401
        import huggingface_hub  # noqa: F401
        import huggingface_hub.file_download  # noqa: F401

        from xinference.model.hub import cache
        from xinference.model.hub.fetch import fetch_weights
        from xinference.model.hub.progress import DownloadProgress
        from xinference.model.hub.request import HubFiles, WeightsRequest

        real_sha256 = cache.sha256_of
        if args.child == "ours-nohash":
            cache.sha256_of = lambda path: args.sha256  # the only change: no hashing
        req = WeightsRequest(
            model_version="bench-download--1B-ggufv2-q4_k_m", model_name="bench-download",
            model_type="LLM", model_format="ggufv2", model_size_in_billions="1",
            quantization="q4_k_m", kind="file", download_hub="huggingface",
            sources={"huggingface": HubFiles(repo_id=REPO, files=[FILE])})
        progress = DownloadProgress()
        out["import_s"] = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), cpu_s()
        path = fetch_weights(req, progress)
        out["download_s"], out["cpu_s"] = time.perf_counter() - t0, cpu_s() - c0
        assert progress.stage == "done", progress.report()
        if args.child == "ours-nohash":
            t0 = time.perf_counter()
            got = real_sha256(Path(path))
            out["sha256_s"] = time.perf_counter() - t0
            assert got == args.sha256, "the downloaded file does not match"
    out["bytes"] = os.path.getsize(path)
    print(json.dumps(out), flush=True)


# ---- throughput ---------------------------------------------------------------------------


def random_file(path: Path, size: int) -> str:
    """Writes `size` random bytes; returns their sha256."""
    h = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def run_side(side: str, hub_env: Dict[str, str], sha: str, work: Path, timeout: float) -> Dict[str, float]:
    """One download in a fresh child, in fresh homes under `work` (removed afterwards)."""
    try:
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
        env.update(hub_env, HF_HOME=str(work / "hf-home"), XINFERENCE_HOME=str(work / "xinf-home"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side,
               "--dest", str(work / "dest"), "--sha256", sha]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, cwd=str(work))
        if r.returncode != 0:
            raise RuntimeError(f"{side} child failed ({r.returncode}):\n{r.stderr[-3000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def throughput(args: argparse.Namespace, hub, tmp: Path) -> None:
    size = args.size_mb * 1_000_000
    data = tmp / "weights.bin"
    t0 = time.perf_counter()
    sha = random_file(data, size)
    print(f"random file: {size / MB:.0f} MB in {time.perf_counter() - t0:.1f}s", flush=True)
    hub.add_repo(REPO, {FILE: str(data)})
    # the fake hub hashes a file on first use: do it now, not inside the first timed side
    httpx.head(f"{hub.url}/{REPO}/resolve/main/{FILE}", timeout=args.timeout)

    keys = ("mbps", "s", "cpu_s", "hub_cpu_s", "import_s")
    per: Dict[str, Dict[str, List[float]]] = {s: {k: [] for k in keys} for s in SIDES}
    ratio: Dict[str, List[float]] = {s: [] for s in SIDES[1:]}
    hashing: List[float] = []
    verify_gap: List[float] = []  # ours - ours-nohash, seconds, per round
    by_place: List[List[float]] = [[], [], []]  # MB/s / the round's mean, by place in the round
    n = 0
    for i in range(args.warmup + args.rounds):
        warm = i < args.warmup
        order = SIDES[i % 3:] + SIDES[:i % 3]  # each side in each place, every 3 rounds
        got: Dict[str, Dict[str, float]] = {}
        for side in order:
            time.sleep(args.settle)
            served = hub.bytes_served(REPO, FILE)
            c0 = cpu_s()  # this process is idle but for the fake hub's threads
            got[side] = run_side(side, hub.env, sha, tmp / f"r{i}-{side}", args.timeout)
            got[side]["hub_cpu_s"] = cpu_s() - c0
            assert got[side]["bytes"] == size, got[side]
            assert hub.bytes_served(REPO, FILE) - served == size, "a side did not fetch the file once"
        for s in SIDES:
            got[s]["s"] = got[s]["download_s"]
            got[s]["mbps"] = size / MB / got[s]["download_s"]
        label = "warm-up" if warm else f"round {i - args.warmup + 1}"
        print(f"{label} ({' > '.join(order)}): "
              + ", ".join(f"{s} {got[s]['mbps']:.0f} MB/s" for s in SIDES)
              + f", sha256 {got['ours-nohash']['sha256_s']:.2f}s"
              + f", ours/plain {got['ours']['mbps'] / got['plain']['mbps']:.3f}", flush=True)
        if warm:
            continue
        n += 1
        for s in SIDES:
            for k in keys:
                per[s][k].append(got[s][k])
        for place, s in enumerate(order):
            by_place[place].append(got[s]["mbps"] / statistics.mean(got[x]["mbps"] for x in SIDES))
        for s in SIDES[1:]:
            ratio[s].append(got[s]["mbps"] / got["plain"]["mbps"])
        hashing.append(got["ours-nohash"]["sha256_s"])
        verify_gap.append(got["ours"]["s"] - got["ours-nohash"]["s"])

    def mmm(xs: List[float], fmt: str) -> List[str]:
        return [format(min(xs), fmt), format(statistics.median(xs), fmt), format(max(xs), fmt)]

    def med(xs: List[float]) -> str:
        return f"{statistics.median(xs):.2f}"

    print(f"\nThroughput, {size / MB:.0f} MB from the fake hub, {n} rounds (a fresh child per side)")
    rows = [[f"{s}, MB/s"] + mmm(per[s]["mbps"], ".0f")
            + [med(per[s][k]) for k in ("s", "cpu_s", "hub_cpu_s", "import_s")] for s in SIDES]
    print(table(["", "min", "median", "max", "s", "child CPU s", "hub CPU s", "import s"], rows))
    print("(s, CPU s, import s: medians; child CPU = the download call's process, all threads;"
          " hub CPU = the fake hub's threads in this process)\n")
    rows = [[f"{s} / plain"] + mmm(ratio[s], ".3f") for s in SIDES[1:]]
    rows += [["ours - ours-nohash, s"] + mmm(verify_gap, ".3f")]
    rows += [["sha256_of on the file, s"] + mmm(hashing, ".3f")]
    rows += [["sha256_of, MB/s"] + mmm([size / MB / h for h in hashing], ".0f")]
    print(table(["per round", "min", "median", "max"], rows))
    print("place in the round (1st, 2nd, 3rd), median MB/s / the round's mean, any side: "
          + ", ".join(f"{statistics.median(xs):.2f}" for xs in by_place if xs)
          + " (1.00 each when the order does not matter)")


# ---- heartbeats ---------------------------------------------------------------------------


@contextlib.contextmanager
def patched_env(values: Dict[str, str], drop: tuple = ()) -> Iterator[None]:
    """os.environ with `values` set (LocalServer copies os.environ into the server's)."""
    saved = dict(os.environ)
    try:
        for k in drop:
            os.environ.pop(k, None)
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def sample(c: httpx.Client, seconds: float, uid: Optional[str] = None) -> Dict[str, List[float]]:
    """Every 0.2 s: seconds_since_heartbeat and the route latencies. With `uid`, stops
    early once the launch leaves the download stage."""
    out: Dict[str, List[float]] = {"hb": [], "workers_ms": [], "progress_ms": []}
    start = time.monotonic()
    tick = start
    while time.monotonic() - start < seconds:
        t0 = time.perf_counter()
        r = c.get("/v1/workers")
        out["workers_ms"].append((time.perf_counter() - t0) * 1e3)
        r.raise_for_status()
        out["hb"].append(max(w["seconds_since_heartbeat"] for w in r.json()))
        if uid is not None:
            t0 = time.perf_counter()
            p = c.get(f"/v1/models/{uid}/progress")
            out["progress_ms"].append((time.perf_counter() - t0) * 1e3)
            p.raise_for_status()
            if p.json()["stage"] != "downloading":
                break
        tick += 0.2
        time.sleep(max(0.0, tick - time.monotonic()))
    out["seconds"] = [time.monotonic() - start]
    return out


def download_report(c: httpx.Client, uid: str) -> Dict:
    r = c.get(f"/v1/models/{uid}/progress")
    r.raise_for_status()
    body = r.json()
    return {"stage": body["stage"], **(body["replicas"][0].get("download") or {})}


def heartbeat(args: argparse.Namespace, hub, tmp: Path) -> None:
    from xinference.model.llm.launch import plan_launch

    gemma = plan_launch("gemma-3").resolve_weights()  # the embedded GGUF, before HOME moves
    size = os.path.getsize(gemma)
    hub.add_repo(HB_REPO, {"x-q4_k_m.gguf": gemma})
    httpx.head(f"{hub.url}/{HB_REPO}/resolve/main/x-q4_k_m.gguf", timeout=args.timeout)
    # the replica needs a few seconds to start before it downloads: the download is
    # throttled to last the sampling window plus that margin
    rate = int(size / (args.hb_seconds + 8))
    env = {**hub.env, "XINFERENCE_HOME": str(tmp / "server-home"), "HF_HOME": str(tmp / "server-hf"),
           "XINFERENCE_HEARTBEAT_INTERVAL": "1"}
    with patched_env(env, drop=("HF_HUB_OFFLINE", "HF_TOKEN")):
        server = LocalServer()
    try:
        print(f"\nserver ready in {server.wait_ready(args.timeout):.1f}s", flush=True)
        with httpx.Client(base_url=server.url, timeout=args.timeout) as c:
            family = {
                "version": 1, "context_length": 2048, "model_name": HB_MODEL, "model_lang": ["en"],
                "model_ability": ["generate"],
                "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": 1,
                                 "quantizations": ["q4_k_m"], "model_id": HB_REPO,
                                 "model_hub": "huggingface",
                                 "model_file_name_template": "x-{quantization}.gguf"}],
            }
            r = c.post("/v1/model_registrations/LLM", json={"model": json.dumps(family), "persist": False})
            if r.status_code != 200:
                raise RuntimeError(f"register failed: {r.status_code} {r.text}")
            time.sleep(2.0)  # let the start settle before the idle window
            idle = sample(c, args.hb_seconds)
            print(f"idle: {len(idle['hb'])} samples over {idle['seconds'][0]:.1f}s", flush=True)

            hub.throttle(rate)
            launched = time.monotonic()
            r = c.post("/v1/models", params={"wait_ready": "false"},
                       json={"model_name": HB_MODEL, "model_uid": HB_UID, "n_ctx": 512})
            if r.status_code != 200:
                raise RuntimeError(f"launch failed: {r.status_code} {r.text}")
            while True:  # until bytes arrive
                rep = download_report(c, HB_UID)
                if rep.get("downloaded_bytes", 0) > 0:
                    break
                if time.monotonic() - launched > args.timeout:
                    raise TimeoutError(f"no download after {args.timeout:g}s: {rep}")
                time.sleep(0.1)
            print(f"download started {time.monotonic() - launched:.1f}s after the launch "
                  f"({size / MB:.0f} MB at {rate / MB:.1f} MB/s)", flush=True)
            busy = sample(c, args.hb_seconds, HB_UID)
            rep = download_report(c, HB_UID)
            print(f"downloading: {len(busy['hb'])} samples over {busy['seconds'][0]:.1f}s; then "
                  f"stage {rep['stage']}, {rep.get('downloaded_bytes', 0) / MB:.0f} of "
                  f"{rep.get('total_bytes', 0) / MB:.0f} MB, reported speed "
                  f"{rep.get('speed_bytes_per_s', 0) / MB:.1f} MB/s", flush=True)
            t0 = time.perf_counter()
            r = c.post(f"/v1/models/{HB_UID}/cancel")
            print(f"cancel: HTTP {r.status_code} in {time.perf_counter() - t0:.2f}s", flush=True)
    finally:
        hub.throttle(None)
        server.stop()

    def row(name: str, xs: List[float], fmt: str) -> List[str]:
        return [name, format(percentile(xs, 50), fmt), format(percentile(xs, 95), fmt),
                format(max(xs), fmt), str(len(xs))]

    print(f"\nHeartbeats (interval 1 s), idle vs while a launch downloads, {args.hb_seconds:g}s each")
    print(table(["", "p50", "p95", "max", "samples"], [
        row("seconds_since_heartbeat, idle", idle["hb"], ".3f"),
        row("seconds_since_heartbeat, downloading", busy["hb"], ".3f"),
        row("GET /v1/workers ms, idle", idle["workers_ms"], ".1f"),
        row("GET /v1/workers ms, downloading", busy["workers_ms"], ".1f"),
        row("GET /v1/models/{uid}/progress ms", busy["progress_ms"], ".1f"),
    ]))


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    exit_on_sigterm()
    sys.path.insert(0, str(ROOT))  # tests.fake_hub
    from tests.fake_hub import FakeHub

    with tempfile.TemporaryDirectory(prefix="xinf-bench-dl-") as d, FakeHub() as hub:
        tmp = Path(d)
        print(f"fake hub {hub.url}; {os.cpu_count()} CPUs; load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        if not args.skip_throughput:
            throughput(args, hub, tmp)
        if not args.skip_heartbeat:
            heartbeat(args, hub, tmp)


if __name__ == "__main__":
    main()
