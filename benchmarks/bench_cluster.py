"""A cluster on loopback: 1 supervisor + W worker daemons, a model with R replicas.

    python benchmarks/bench_cluster.py                 # 16 workers, 64 replicas
    python benchmarks/bench_cluster.py --quick         # 4 workers, 8 replicas, shorter phases

Every replica is a real llama.cpp replica process of a tiny random-weight GGUF (the
tiny Llama of tests/tiny_models.py written by tests/tiny_gguf.py, built once into
~/.cache/xinference-bench), launched as `gemma-3` with `model_path`, so each costs
little memory and a request costs the serving path, not the model. The daemons run
on 127.0.0.1 with XOSCAR_DIR, XINFERENCE_STATE_DIR and XINFERENCE_HOME in a temp dir,
each in its own process group; every group is killed at the end, on error too.

Models: `one` (1 replica) and `p1` / `p2` (1 and 2 replicas, for the prefix figure) on
the first worker; `many` (R replicas) spread over the workers by the supervisor.

Printed, in this order:
1. prefix hits: `cached_tokens` per turn of one multi-turn conversation on `p1` and
   on `p2` (goal: equal);
2. routing: p50 latency of `/v1/completions` with 1 token, sequential requests, in
   interleaved rounds (each side leads in turn): a short prompt (under one prefix
   block, so each request goes to the next idle replica: a different process each
   time) on `one`, `p2` and `many`, and a long one (prefix affinity sends every
   request to the same replica) on `one` and `many`; ratios to `one` (goal: ~1, flat
   in the number of replicas);
3. idle CPU: traffic stopped, CPU time of the supervisor's process tree (REST server
   and supervisor actor), each worker daemon and each replica process over --idle-s
   seconds, per window of 5 s (goal: supervisor < 1 % of a core);
4. memory: RSS / PSS of the replica processes and the daemons, and how much the
   machine's available memory fell;
5. failover: threads send short chats to `many` back to back (a distinct prompt each,
   so they spread over all replicas); one worker holding only `many` replicas is
   SIGKILLed with its whole process group; sending goes on for --failover-s seconds.
   Sent, failed, time from the kill to the last failed request (goal: 0 failed), then
   when the supervisor dropped the worker and when `many` was whole again.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import httpx
import psutil
from _local import HOST, exit_on_sigterm, free_port, percentile, table

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "xinference-bench"
GGUF_NAME = "tiny-llama-F32.gguf"
WINDOW_S = 5.0
SYSTEM = "You are a patient assistant who explains the sea, its tides and its animals. " * 4

_BUILD = """
import sys, tempfile
sys.path.insert(0, {root!r})
from tests.tiny_models import build_tiny_llama
from tests.tiny_gguf import build_tiny_llama_gguf
with tempfile.TemporaryDirectory() as d:
    build_tiny_llama_gguf(build_tiny_llama(d), {out!r})
"""


def tiny_gguf() -> str:
    """The tiny Llama as a GGUF file, built once (a child process: torch stays out of here)."""
    path = CACHE / GGUF_NAME
    if path.exists():
        return str(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    part = CACHE / (GGUF_NAME + f".{os.getpid()}.part")
    print(f"building {path} (tests/tiny_gguf.py) ...", flush=True)
    subprocess.run([sys.executable, "-c", _BUILD.format(root=str(ROOT), out=str(part))], check=True, cwd=ROOT)
    os.replace(part, path)
    return str(path)


# ---- daemons -------------------------------------------------------------------------


class Daemon:
    """A daemon in its own session; `kill()` ends its whole process group and whatever
    of its tree left the group."""

    def __init__(self, name: str, args: List[str], env: Dict[str, str], log_dir: str):
        self.name = name
        self.log_path = os.path.join(log_dir, f"{name}.log")
        exe = Path(sys.executable).with_name(args[0])
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(exe) if exe.exists() else args[0], *args[1:]], env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        self.address: Optional[str] = None  # a worker's xoscar address, once known

    def process(self) -> Optional[psutil.Process]:
        try:
            return psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return None

    def children(self) -> List[psutil.Process]:
        p = self.process()
        try:
            return p.children(recursive=True) if p else []
        except psutil.NoSuchProcess:
            return []

    def log_tail(self, n: int = 3000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self) -> None:
        stray = self.children()
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p in stray:  # a child that moved to another group
            try:
                p.kill()
            except psutil.Error:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


class Cluster:
    def __init__(self, n_workers: int, args: argparse.Namespace):
        self._tmp = tempfile.TemporaryDirectory(prefix="xinf-cluster-")
        tmp = self._tmp.name
        self.log_dir = tmp
        self.env = dict(
            os.environ, XOSCAR_DIR=tmp, XINFERENCE_STATE_DIR=os.path.join(tmp, "state"),
            XINFERENCE_HOME=os.path.join(tmp, "home"), PYTHONUNBUFFERED="1",
            HF_ENDPOINT="http://127.0.0.1:9", MODELSCOPE_ENDPOINT="http://127.0.0.1:9",
            # one launch of every replica, and room on the first worker for the small models
            XINFERENCE_MAX_REPLICAS=str(max(8, args.replicas)),
            XINFERENCE_MAX_REPLICAS_PER_WORKER=str(max(16, args.replicas + 8)),
        )
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.n_workers = n_workers
        self.log_level = args.log_level
        self.supervisor: Optional[Daemon] = None
        self.workers: List[Daemon] = []

    def start(self, timeout: float = 180) -> float:
        t0 = time.perf_counter()
        self.supervisor = Daemon("supervisor", [
            "xinference-supervisor", "-H", HOST, "-p", str(self.port), "--no-ui",
            "--log-level", self.log_level], self.env, self.log_dir)
        self._wait(lambda c: c.get(self.url + "/status").status_code == 200, timeout, self.supervisor, "/status")
        for i in range(self.n_workers):
            self.workers.append(Daemon(f"worker{i}", [
                "xinference-worker", "-e", self.url, "-H", HOST, "--log-level", self.log_level],
                self.env, self.log_dir))
        self._wait(lambda c: len(c.get(self.url + "/v1/workers").json()) == self.n_workers,
                   timeout, self.supervisor, f"{self.n_workers} workers registered")
        self._map_workers()
        return time.perf_counter() - t0

    def _wait(self, ok: Any, timeout: float, daemon: Daemon, what: str) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5) as c:
            while time.monotonic() < deadline:
                for d in [daemon, *self.workers]:
                    if d.proc.poll() is not None:
                        raise RuntimeError(f"{d.name} exited ({d.proc.returncode}):\n{d.log_tail()}")
                try:
                    if ok(c):
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(0.2)
        raise TimeoutError(f"{what}: not after {timeout:g}s\n{daemon.log_tail()}")

    def _map_workers(self) -> None:
        """Which daemon is which worker address: the daemon listening on its port."""
        listed = [w["worker_address"] for w in httpx.get(self.url + "/v1/workers", timeout=10).json()]
        for d in self.workers:
            try:
                ports = {c.laddr.port for c in psutil.Process(d.pid).net_connections("tcp")
                         if c.status == psutil.CONN_LISTEN}
            except psutil.Error:
                ports = set()
            d.address = next((a for a in listed if int(a.rsplit(":", 1)[1]) in ports), None)
        missing = [d.name for d in self.workers if d.address is None]
        if missing:
            raise RuntimeError(f"no worker address found for {missing}; listed: {listed}")

    def by_address(self, address: str) -> Daemon:
        return next(d for d in self.workers if d.address == address)

    def stop(self) -> None:
        for d in [*self.workers, *([self.supervisor] if self.supervisor else [])]:
            d.kill()
        self._tmp.cleanup()


# ---- models --------------------------------------------------------------------------


def launch(c: httpx.Client, url: str, body: Dict[str, Any]) -> None:
    r = c.post(url + "/v1/models", json=body, params={"wait_ready": "false"}, timeout=120)
    if r.status_code != 200:
        raise RuntimeError(f"launch {body.get('model_uid')}: {r.status_code} {r.text}")


def wait_ready(c: httpx.Client, url: str, uids: Sequence[str], timeout: float, sup: Daemon) -> None:
    deadline = time.monotonic() + timeout
    last_print = 0.0
    pending = list(uids)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pending} not READY after {timeout:g}s\n{sup.log_tail()}")
        if sup.proc.poll() is not None:
            raise RuntimeError(f"supervisor exited:\n{sup.log_tail()}")
        done = 0
        for uid in list(pending):
            r = c.get(f"{url}/v1/models/{uid}/progress", timeout=30)
            if r.status_code != 200:
                r2 = c.get(f"{url}/v1/models/{uid}", timeout=30)
                raise RuntimeError(f"{uid}: {r.status_code} {r.text} / {r2.status_code} {r2.text}")
            reps = r.json().get("replicas") or []
            ready = sum(1 for x in reps if x.get("stage") == "ready")
            done += ready
            if reps and ready == len(reps):
                desc = c.get(f"{url}/v1/models/{uid}", timeout=60).json()
                if desc.get("status") == "READY":
                    pending.remove(uid)
                elif desc.get("status") == "ERROR":
                    raise RuntimeError(f"{uid} failed: {desc}")
        if time.monotonic() - last_print > 15:
            last_print = time.monotonic()
            print(f"  ... {pending or 'all'} launching, {done} replicas of them ready", flush=True)
        time.sleep(1.0)


def replica_spread(c: httpx.Client, url: str, uid: str) -> Dict[str, int]:
    desc = c.get(f"{url}/v1/models/{uid}", timeout=60).json()
    per: Dict[str, int] = {}
    for rep in desc["replicas"]:
        per[rep["worker_address"]] = per.get(rep["worker_address"], 0) + 1
    return per


# ---- measurements --------------------------------------------------------------------


def mmm(xs: Sequence[float], fmt: str = "{:.2f}") -> List[str]:
    return [fmt.format(min(xs)), fmt.format(statistics.median(xs)), fmt.format(max(xs))]


def completion(c: httpx.Client, url: str, uid: str, prompt: str) -> float:
    t0 = time.perf_counter()
    r = c.post(url + "/v1/completions", json={
        "model": uid, "prompt": prompt, "max_tokens": 1, "temperature": 0})
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"{uid}: {r.status_code} {r.text}")
    return dt


SHORT = "Tell me about the sea."  # under one prefix block: the least busy replica takes it
# two prefix blocks: every request goes to the replica that served this text before
LONG = "Tell me about the sea, its tides, its animals and the ships that sail on it, in a few words."


def routing(url: str, rounds: int, per_round: int, replicas: int) -> None:
    sides = [("one", SHORT), ("p2", SHORT), ("many", SHORT), ("one", LONG), ("many", LONG)]
    with httpx.Client(timeout=60) as c:
        for _ in range(2 * replicas):  # every replica has served the short prompt once or twice
            completion(c, url, "many", SHORT)
        for uid, prompt in sides:
            for _ in range(10):
                completion(c, url, uid, prompt)
        p50: Dict[int, List[float]] = {i: [] for i in range(len(sides))}
        p90: Dict[int, List[float]] = {i: [] for i in range(len(sides))}
        for r in range(rounds):
            for k in range(len(sides)):
                i = (k + r) % len(sides)  # each side leads in turn
                uid, prompt = sides[i]
                lat = [completion(c, url, uid, prompt) * 1000 for _ in range(per_round)]
                p50[i].append(percentile(lat, 50))
                p90[i].append(percentile(lat, 90))
        stats = c.get(url + "/v1/models/many/replicas", timeout=30).json()
    served = sorted(s.get("served", 0) for s in stats)
    names = {"one": "one (1 repl.)", "p2": "p2 (2 repl., n_ctx 1024)", "many": f"many ({replicas} repl.)"}
    print(f"\n## routing: /v1/completions, 1 token, {rounds} interleaved rounds x {per_round} requests, ms")
    rows = []
    for i, (uid, prompt) in enumerate(sides):
        how = "short prompt, spread" if prompt == SHORT else "long prompt, prefix affinity"
        rows.append([f"{names[uid]}, {how}", *mmm(p50[i]),
                     f"{statistics.median(p90[i]):.2f}"])
    pairs = ((1, 0, "p2/one, short"), (2, 0, "many/one, short"), (4, 3, "many/one, long"))
    for a, b, how in pairs:
        ratios = [x / y for x, y in zip(p50[a], p50[b])]
        rows.append([f"ratio {how} (per round)", *mmm(ratios, "{:.3f}"), ""])
    print(table(["", "p50 min", "p50 median", "p50 max", "p90 median"], rows))
    for a, b, how in pairs:
        print(f"ratio of the medians, {how}: {statistics.median(p50[a]) / statistics.median(p50[b]):.3f}")
    print(f"(goal: ~1.0) `many`'s replicas served {served[0]}..{served[-1]} requests each "
          f"(the long prompt's replica: {served[-1]})")


def conversation(c: httpx.Client, url: str, uid: str, turns: int) -> List[int]:
    history = [{"role": "system", "content": SYSTEM}]
    cached = []
    for i in range(turns):
        history.append({"role": "user", "content": f"Tell me one more thing about the sea, please ({i})."})
        r = c.post(url + "/v1/chat/completions", json={
            "model": uid, "messages": history, "max_tokens": 12, "temperature": 0})
        if r.status_code != 200:
            raise RuntimeError(f"{uid}: {r.status_code} {r.text}")
        body = r.json()
        details = body["usage"].get("prompt_tokens_details") or {}
        cached.append(int(details.get("cached_tokens") or 0))
        history.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})
    return cached


def prefix(url: str, turns: int) -> None:
    with httpx.Client(timeout=120) as c:
        one = conversation(c, url, "p1", turns)
        two = conversation(c, url, "p2", turns)
        served = sorted(s.get("served", 0) for s in c.get(url + "/v1/models/p2/replicas").json())
    print(f"\n## prefix hits: one {turns}-turn conversation, cached_tokens per turn")
    rows = [["1 replica (p1)", *map(str, one)], ["2 replicas (p2)", *map(str, two)]]
    print(table(["", *[f"turn {i + 1}" for i in range(turns)]], rows))
    print(f"equal: {one == two}; p2's replicas served {served} of the turns")


def _cpu(p: psutil.Process) -> Optional[float]:
    try:
        t = p.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return None


def _groups(cluster: Cluster) -> Dict[str, List[psutil.Process]]:
    sup = cluster.supervisor
    assert sup is not None
    groups: Dict[str, List[psutil.Process]] = {"supervisor": [], "worker": [], "replica": []}
    sp = sup.process()
    groups["supervisor"] = ([sp] if sp else []) + sup.children()
    for w in cluster.workers:
        wp = w.process()
        if wp:
            groups["worker"].append(wp)
            groups["replica"].extend(w.children())
    return groups


def quiet(timeout: float, below: float = 50.0) -> None:
    """Waits (at most `timeout` s) until the machine's CPUs are under `below` % busy over
    2 s: the launch leaves a tail of busy processes."""
    t0 = time.perf_counter()
    busy = psutil.cpu_percent(interval=2.0)
    while busy >= below and time.perf_counter() - t0 < timeout:
        busy = psutil.cpu_percent(interval=2.0)
    print(f"\n(quiet after {time.perf_counter() - t0:.0f} s: CPUs {busy:.0f} % busy)")


def idle_cpu(cluster: Cluster, seconds: float, settle: float) -> None:
    time.sleep(settle)
    groups = _groups(cluster)
    windows = max(1, int(round(seconds / WINDOW_S)))
    per: Dict[Tuple[str, int], List[float]] = {}  # (group, pid) -> % of a core per window
    before = {(g, p.pid): _cpu(p) for g, ps in groups.items() for p in ps}
    t_prev = time.perf_counter()
    for _ in range(windows):
        time.sleep(WINDOW_S)
        now = time.perf_counter()
        after = {(g, p.pid): _cpu(p) for g, ps in groups.items() for p in ps}
        for key, b in before.items():
            a = after.get(key)
            if a is not None and b is not None:
                per.setdefault(key, []).append((a - b) / (now - t_prev) * 100)
        before, t_prev = after, now
    print(f"\n## idle CPU, % of one core: {windows} windows of {WINDOW_S:g} s, {settle:g} s after the last request")
    rows = []
    for g, label in (("supervisor", "supervisor + REST (process tree)"), ("worker", "worker daemon, mean of all"),
                     ("replica", "replica process, mean of all")):
        keys = [k for k in per if k[0] == g]
        if not keys:
            continue
        if g == "supervisor":  # the tree's sum per window
            series = [sum(per[k][i] for k in keys) for i in range(windows)]
        else:
            series = [statistics.mean(per[k][i] for k in keys) for i in range(windows)]
        busiest = max(statistics.mean(per[k]) for k in keys)
        rows.append([label, str(len(keys)), *mmm(series, "{:.3f}"), f"{busiest:.3f}" if g != "supervisor" else ""])
    total = [sum(per[k][i] for k in per) for i in range(windows)]
    rows.append(["everything (sum)", str(len(per)), *mmm(total, "{:.3f}"), ""])
    print(table(["", "processes", "min", "median", "max", "busiest process (mean)"], rows))
    sup_med = statistics.median([sum(per[k][i] for k in per if k[0] == "supervisor") for i in range(windows)])
    print(f"supervisor idle: {sup_med:.3f} % of a core (goal: < 1 %)")


def memory(cluster: Cluster, avail_before: int) -> None:
    groups = _groups(cluster)
    rows = []
    for g in ("supervisor", "worker", "replica"):
        rss, pss = [], []
        for p in groups[g]:
            try:
                info = p.memory_full_info()
                rss.append(info.rss)
                pss.append(getattr(info, "pss", info.rss))
            except psutil.Error:
                pass
        if rss:
            mib = 1 << 20
            rows.append([g, str(len(rss)), f"{sum(rss) / mib:.0f}", f"{statistics.mean(rss) / mib:.0f}",
                         f"{sum(pss) / mib:.0f}", f"{statistics.mean(pss) / mib:.0f}"])
    fell = (avail_before - psutil.virtual_memory().available) / (1 << 20)
    print("\n## memory, MiB (PSS shares the mmapped model and libraries among processes)")
    print(table(["", "processes", "RSS sum", "RSS mean", "PSS sum", "PSS mean"], rows))
    print(f"available memory fell by {fell:.0f} MiB since before the daemons started")


def _pgid(pid: int) -> Optional[int]:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _load(url: str, uid: str, tid: int, stop: threading.Event, out: List[Tuple[float, float, bool, str]]) -> None:
    with httpx.Client(timeout=30) as c:
        i = 0
        while not stop.is_set():
            i += 1
            body = {"model": uid, "max_tokens": 2, "temperature": 0,
                    "messages": [{"role": "user", "content": f"{tid}.{i}: tell me about the sea."}]}
            t0 = time.monotonic()
            try:
                r = c.post(url + "/v1/chat/completions", json=body)
                ok, err = r.status_code == 200, "" if r.status_code == 200 else f"{r.status_code} {r.text[:300]}"
            except httpx.HTTPError as e:
                ok, err = False, repr(e)
            out.append((t0, time.monotonic(), ok, err))


def failover(cluster: Cluster, spare: str, threads: int, before_s: float, after_s: float,
             recover_s: float, replicas: int) -> None:
    url = cluster.url
    with httpx.Client(timeout=60) as c:
        spread = replica_spread(c, url, "many")
        candidates = [a for a in spread if a != spare]
        if not candidates:
            print("\n## failover: skipped (every worker holding `many` also holds the other models)")
            return
        victim_addr = max(candidates, key=lambda a: spread[a])
        victim = cluster.by_address(victim_addr)
        kids = victim.children()
        other_group = [p.pid for p in kids if _pgid(p.pid) not in (victim.pid, None)]
        stop = threading.Event()
        out: List[Tuple[float, float, bool, str]] = []
        runners = [threading.Thread(target=_load, args=(url, "many", t, stop, out), daemon=True)
                   for t in range(threads)]
        for t in runners:
            t.start()
        time.sleep(before_s)
        killed = time.monotonic()
        os.killpg(victim.pid, signal.SIGKILL)
        dropped: Optional[float] = None
        while time.monotonic() - killed < after_s:
            if dropped is None:
                try:
                    listed = [w["worker_address"] for w in c.get(url + "/v1/workers", timeout=5).json()]
                    if victim_addr not in listed:
                        dropped = time.monotonic() - killed
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        stop.set()
        for t in runners:
            t.join(60)
        victim.kill()  # reaps it; its group is gone already
        whole: Optional[float] = None
        while time.monotonic() - killed < recover_s and (dropped is None or whole is None):
            try:
                if dropped is None:
                    listed = [w["worker_address"] for w in c.get(url + "/v1/workers", timeout=5).json()]
                    if victim_addr not in listed:
                        dropped = time.monotonic() - killed
                else:
                    desc = c.get(url + "/v1/models/many", timeout=30).json()
                    reps = desc.get("replicas") or []
                    if len(reps) == replicas and all(r.get("ready") for r in reps) \
                            and victim_addr not in {r["worker_address"] for r in reps}:
                        whole = time.monotonic() - killed
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
    pre = [r for r in out if r[0] < killed]
    post = [r for r in out if r[0] >= killed]
    failed = [r for r in out if not r[2]]
    last_failed = f"{max(r[1] for r in failed) - killed:.2f} s" if failed else "none"
    print(f"\n## failover: {threads} threads of 2-token chats on `many`; SIGKILL to {victim.name}'s process group "
          f"({spread[victim_addr]} of {replicas} replicas) after {before_s:g} s, load for {after_s:g} s more")
    if other_group:
        print(f"(note: {len(other_group)} of its processes were in another group and were not killed with it)")
    rows = []
    for label, rs in (("before the kill", pre), ("after the kill", post)):
        lat = [(r[1] - r[0]) * 1000 for r in rs]
        rows.append([label, str(len(rs)), str(sum(1 for r in rs if not r[2])),
                     f"{percentile(lat, 50):.1f}" if lat else "-", f"{percentile(lat, 99):.1f}" if lat else "-",
                     f"{max(lat):.1f}" if lat else "-"])
    print(table(["", "sent", "failed", "p50 ms", "p99 ms", "max ms"], rows))
    print(f"kill -> last failed request: {last_failed} (goal: 0 failed)")
    if failed:
        print(f"first failure: {failed[0][3][:300]}")
    print(f"supervisor dropped the worker: {f'+{dropped:.1f} s' if dropped is not None else 'not seen'}; "
          f"`many` whole again ({replicas} ready, none on the dead worker): "
          f"{f'+{whole:.1f} s' if whole is not None else f'not within {recover_s:g} s'}")


# ---- main ----------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="4 workers, 8 replicas, shorter phases")
    p.add_argument("--workers", type=int, default=None, help="worker daemons (default 16; --quick 4)")
    p.add_argument("--replicas", type=int, default=None, help="replicas of `many` (default 64; --quick 8)")
    p.add_argument("--gguf", default=None, help="GGUF to serve (default: the tiny Llama, built once)")
    p.add_argument("--n-ctx", type=int, default=256, help="n_ctx of `one` and `many`")
    p.add_argument("--n-parallel", type=int, default=2)
    p.add_argument("--n-threads", type=int, default=1, help="llama.cpp threads per replica")
    p.add_argument("--rounds", type=int, default=None, help="routing rounds (default 15; --quick 3)")
    p.add_argument("--per-round", type=int, default=60, help="requests per model per routing round")
    p.add_argument("--turns", type=int, default=4, help="turns of the prefix conversation")
    p.add_argument("--idle-s", type=float, default=None, help="idle CPU sampling (default 30; --quick 15)")
    p.add_argument("--settle-s", type=float, default=5.0, help="quiet time before the idle sampling")
    p.add_argument("--failover-threads", type=int, default=2)
    p.add_argument("--failover-s", type=float, default=None, help="load after the kill (default 20; --quick 10)")
    p.add_argument("--recover-s", type=float, default=90.0,
                   help="seconds after the kill to wait for the supervisor to drop the worker and relaunch")
    p.add_argument("--skip-failover", action="store_true")
    p.add_argument("--launch-timeout", type=float, default=900.0)
    p.add_argument("--log-level", default="INFO", help="of the daemons")
    args = p.parse_args()
    quick = args.quick
    for name, full, small in (("workers", 16, 4), ("replicas", 64, 8), ("rounds", 15, 3), ("idle_s", 30.0, 15.0),
                              ("failover_s", 20.0, 10.0)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    return args


def main() -> None:
    args = parse_args()
    exit_on_sigterm()
    gguf = args.gguf or tiny_gguf()
    print(f"{args.workers} workers, {args.replicas} replicas of `many`; model {gguf}; "
          f"n_ctx {args.n_ctx}, n_parallel {args.n_parallel}, n_threads {args.n_threads}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    avail_before = psutil.virtual_memory().available
    cluster = Cluster(args.workers, args)
    try:
        took = cluster.start()
        print(f"supervisor + {args.workers} workers up in {took:.1f} s ({cluster.url})", flush=True)
        base = {"model_name": "gemma-3", "model_path": gguf, "n_threads": args.n_threads,
                "n_parallel": args.n_parallel}
        spare = cluster.workers[0].address
        assert spare is not None
        with httpx.Client(timeout=60) as c:
            t0 = time.perf_counter()
            launch(c, cluster.url, {**base, "model_uid": "one", "replica": 1, "n_ctx": args.n_ctx, "worker_ip": spare})
            for uid, n in (("p1", 1), ("p2", 2)):
                launch(c, cluster.url, {**base, "model_uid": uid, "replica": n, "n_ctx": 1024, "worker_ip": spare})
            wait_ready(c, cluster.url, ["one", "p1", "p2"], args.launch_timeout, cluster.supervisor)
            small = time.perf_counter() - t0
            t0 = time.perf_counter()
            launch(c, cluster.url, {**base, "model_uid": "many", "replica": args.replicas, "n_ctx": args.n_ctx})
            wait_ready(c, cluster.url, ["many"], args.launch_timeout, cluster.supervisor)
            big = time.perf_counter() - t0
            spread = replica_spread(c, cluster.url, "many")
        counts = sorted(spread.values())
        print(f"launch: 4 small replicas in {small:.1f} s, `many` ({args.replicas} replicas) in {big:.1f} s; "
              f"spread over {len(spread)} workers, {counts[0]}..{counts[-1]} each", flush=True)

        prefix(cluster.url, args.turns)
        quiet(120.0)
        routing(cluster.url, args.rounds, args.per_round, args.replicas)
        idle_cpu(cluster, args.idle_s, args.settle_s)
        memory(cluster, avail_before)
        if not args.skip_failover:
            failover(cluster, spare, args.failover_threads, 3.0, args.failover_s, args.recover_s, args.replicas)
    except BaseException:
        if cluster.supervisor is not None:
            print(f"--- supervisor log tail ---\n{cluster.supervisor.log_tail()}", file=sys.stderr)
        raise
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
