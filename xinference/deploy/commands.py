"""Client commands of `xinference`: they talk to a running cluster over REST."""

import json
import sys
from typing import Any, Dict, List, Optional, Tuple

import click
from tabulate import tabulate

from .endpoint import client_command, cluster, endpoint_option, fail
from .progress import launch_with_progress


def _coerce(value: str) -> Any:
    """`--n_ctx 2048` arrives as text: give engines numbers, booleans and null."""
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _extra_kwargs(args: List[str]) -> Dict[str, Any]:
    if len(args) % 2:
        raise click.UsageError(f"Extra options come in --key value pairs; got: {' '.join(args)}")
    out: Dict[str, Any] = {}
    for key, value in zip(args[::2], args[1::2]):
        if not key.startswith("--"):
            raise click.UsageError(f"Expected an option like --n_ctx, got {key!r}")
        out[key[2:].replace("-", "_")] = _coerce(value)
    return out


@client_command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@endpoint_option
@click.option("-n", "--model-name", required=True, help="Builtin model name, e.g. gemma-3.")
@click.option("-en", "--model-engine", default=None, help="Engine, e.g. llama.cpp [default: first that fits].")
@click.option("-t", "--model-type", default="LLM", show_default=True)
@click.option("-s", "--size-in-billions", "size", default=None, help="Model size, e.g. 7 or 0_5.")
@click.option("-f", "--model-format", default=None, help="ggufv2, pytorch, ...")
@click.option("-q", "--quantization", default=None)
@click.option("-u", "--model-uid", default=None, help="UID to give the model [default: generated].")
@click.option("-r", "--replica", default=1, show_default=True, type=int)
@click.option("--worker-ip", default=None, help="Put the replicas on this worker.")
@click.option("--model-path", default=None, help="Local weights: a .gguf file or a model folder.")
@click.option("--download-hub", type=click.Choice(["huggingface", "modelscope"]), default=None,
              help="Where to download weights from [default: $XINFERENCE_MODEL_SRC, else huggingface].")
@click.option("--n-gpu", default="auto", show_default=True, help="GPUs per replica: a number, auto or none.")
@click.option("--request-limits", default=None, type=int, help="Most concurrent requests per model.")
@click.option("-lm", "--lora-modules", "lora_modules", multiple=True, type=(str, str),
              metavar="NAME PATH", help="Load a LoRA adapter from PATH (on the worker) and serve "
              "it as model NAME. Repeatable.")
@click.pass_context
def launch(ctx: click.Context, endpoint, model_name, model_engine, model_type, size, model_format,
           quantization, model_uid, replica, worker_ip, model_path, download_hub, n_gpu, request_limits,
           lora_modules) -> None:
    """Launch a model (downloading its weights if the worker lacks them) and wait until it
    is ready. Ctrl-C cancels. Extra --key value pairs go to the engine."""
    kwargs = _extra_kwargs(ctx.args)
    if lora_modules:
        kwargs["peft_model_config"] = {
            "lora_list": [{"lora_name": name, "local_path": path} for name, path in lora_modules]
        }
    n_gpu_value: Any = None if str(n_gpu).lower() == "none" else (n_gpu if n_gpu == "auto" else int(n_gpu))
    try:
        with cluster(endpoint) as client:
            uid = launch_with_progress(
                client, model_name=model_name, model_engine=model_engine, model_type=model_type,
                model_size_in_billions=size, model_format=model_format, quantization=quantization,
                model_uid=model_uid, replica=replica, worker_ip=worker_ip, model_path=model_path,
                download_hub=download_hub, n_gpu=n_gpu_value, request_limits=request_limits, **kwargs,
            )
    except KeyboardInterrupt:
        sys.exit(130)
    click.echo(f"Model uid: {uid}")


def _size(value: Any) -> str:
    return str(value).replace("_", ".")


@client_command("list")
@endpoint_option
def list_models(endpoint) -> None:
    """Show the running models."""
    with cluster(endpoint) as client:
        models = client.list_models()
    if not models:
        click.echo("No running models. Launch one with: xinference launch -n gemma-3")
        return
    # One table per model type: their columns differ.
    llms = [_model_row(uid, d) for uid, d in models.items() if d["model_type"] == "LLM"]
    if llms:
        click.echo(tabulate(llms, headers=["UID", "Type", "Name", "Engine", "Format", "Size (B)",
                                           "Quantization", "Replicas", "Status", "Abilities", "Context"]))
    embeds = [(uid, d["model_name"], d["dimensions"], d["max_tokens"], ", ".join(d["language"]),
               d["replica"], d["status"]) for uid, d in models.items() if d["model_type"] == "embedding"]
    if embeds:
        click.echo(("\n" if llms else "") + tabulate(
            embeds, headers=["UID", "Embedding model", "Dimensions", "Max tokens", "Languages", "Replicas",
                             "Status"]))
    reranks = [(uid, d["model_name"], d["max_tokens"], ", ".join(d["language"]), d["replica"], d["status"])
               for uid, d in models.items() if d["model_type"] == "rerank"]
    if reranks:
        click.echo(("\n" if llms or embeds else "") + tabulate(
            reranks, headers=["UID", "Rerank model", "Max tokens", "Languages", "Replicas", "Status"]))


def _model_row(uid: str, d: Dict[str, Any]) -> tuple:
    if d.get("parent"):
        # A LoRA adapter: its base model's row holds the details.
        return (uid, "LoRA", f"adapter of {d['parent']}", "", "", "", "", "", d["status"],
                ", ".join(d["model_ability"]), "")
    return (uid, d["model_type"], d["model_name"], d["model_engine"], d["model_format"],
            _size(d["model_size_in_billions"]), d["quantization"], d["replica"], d["status"],
            ", ".join(d["model_ability"]), d["context_length"])


@client_command()
@endpoint_option
@click.option("--model-uid", "-u", required=True)
def terminate(endpoint, model_uid) -> None:
    """Stop a model and free its resources."""
    with cluster(endpoint) as client:
        client.terminate_model(model_uid)
    click.echo(f"Model {model_uid} terminated.")


@client_command("stop-cluster")
@endpoint_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
def stop_cluster(endpoint, yes) -> None:
    """Stop every model, every worker and the supervisor; a restart brings no model back."""
    if not yes:
        click.confirm(f"Stop the cluster at {endpoint or 'the default endpoint'} and every model it runs?",
                      abort=True)
    with cluster(endpoint) as client:
        out = client.abort_cluster()
    click.echo(f"Stopped {len(out['models'])} model(s) and {len(out['workers'])} worker(s); "
               "the supervisor exits now.")


@client_command()
@endpoint_option
@click.option("-t", "--model-type", default="LLM", show_default=True)
def registrations(endpoint, model_type) -> None:
    """Show the model families: builtin and registered."""
    with cluster(endpoint) as client:
        fams = client.list_model_registrations(model_type, detailed=True)
    if model_type.lower() in ("embedding", "rerank"):
        short: List[tuple] = [(f["model_name"], ", ".join(f["language"]), f.get("dimensions", ""), f["max_tokens"],
                               _sources(f), _origin(f)) for f in fams]
        click.echo(tabulate(short, headers=["Name", "Language", "Dimensions", "Max tokens", "Source", "Origin"]))
        return
    rows = []
    for f in fams:
        formats = sorted({s["model_format"] for s in f["model_specs"]})
        sizes = sorted({_size(s["model_size_in_billions"]) for s in f["model_specs"]}, key=_num)
        hubs = sorted({h for s in f["model_specs"] for h in s.get("model_src") or {}})
        rows.append((f["model_name"], ", ".join(f["model_lang"]), ", ".join(f["model_ability"]),
                     f["context_length"], ", ".join(formats), ", ".join(sizes), ", ".join(hubs) or "local",
                     _origin(f)))
    click.echo(tabulate(rows, headers=["Name", "Language", "Ability", "Context", "Formats", "Sizes (B)",
                                       "Hubs", "Origin"]))


def _sources(family: Dict[str, Any]) -> str:
    """Where a folder model comes from: its Hugging Face id, else another hub's, else its path."""
    src = family.get("model_src") or {}
    first = src.get("huggingface") or next(iter(src.values()), None)
    return first["model_id"] if first else (family.get("model_uri") or family.get("embedded_package") or "")


def _origin(family: Dict[str, Any]) -> str:
    return "builtin" if family.get("is_builtin", True) else "registered"


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


@client_command()
@endpoint_option
@click.option("-n", "--model-name", required=True)
def engine(endpoint, model_name) -> None:
    """Show which engine, format, size and quantization can launch a model."""
    with cluster(endpoint) as client:
        engines = client.query_engine_by_model_name(model_name)
    rows = [(name, r["model_format"], _size(r["model_size_in_billions"]), ", ".join(r["quantizations"]))
            for name, specs in engines.items() for r in specs]
    click.echo(tabulate(rows, headers=["Engine", "Format", "Size (B)", "Quantizations"]))


def _sampling(max_tokens: int, temperature: Optional[float]) -> Dict[str, Any]:
    cfg: Dict[str, Any] = {"max_tokens": max_tokens, "stream": True}
    if temperature is not None:
        cfg["temperature"] = temperature
    return cfg


def _stream_text(chunks, pick) -> Tuple[str, Optional[str]]:
    parts = []
    finish = None
    for chunk in chunks:
        for choice in chunk.get("choices", []):
            text = pick(choice) or ""
            parts.append(text)
            click.echo(text, nl=False)
            finish = choice.get("finish_reason") or finish
    click.echo("")
    return "".join(parts), finish


def _bold(text: str) -> str:
    # click.prompt does not strip styles when the output is not a terminal
    return click.style(text, bold=True) if sys.stdout.isatty() else text


def _prompts(label: str):
    while True:
        try:
            text = click.prompt(_bold(label), prompt_suffix=" ", default="", show_default=False)
        except (EOFError, click.Abort):
            click.echo("")
            return
        if text.strip().lower() in ("exit", "quit"):
            return
        if text.strip():
            yield text


@client_command()
@endpoint_option
@click.option("--model-uid", "-u", required=True)
@click.option("--max-tokens", default=256, show_default=True, type=int)
@click.option("--temperature", default=None, type=float)
def generate(endpoint, model_uid, max_tokens, temperature) -> None:
    """Complete prompts typed at the prompt (streaming). Type exit to leave."""
    with cluster(endpoint) as client:
        model = client.get_model(model_uid)
        for prompt in _prompts("Prompt:"):
            try:
                _stream_text(model.generate(prompt, _sampling(max_tokens, temperature)),  # type: ignore[attr-defined]
                             lambda c: c.get("text"))
            except RuntimeError as e:
                click.echo(f"Error: {e}", err=True)


def _stream_reply(chunks) -> Tuple[str, List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Echoes a streamed chat answer's text; returns it, its tool calls put back together
    from their pieces, and the calls the server found invalid."""
    parts: List[str] = []
    calls: Dict[int, Dict[str, Any]] = {}
    invalid: List[Dict[str, Any]] = []
    for chunk in chunks:
        for choice in chunk.get("choices", []):
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            parts.append(text)
            click.echo(text, nl=False)
            for piece in delta.get("tool_calls") or ():
                call = calls.setdefault(piece["index"], {"id": "", "type": "function",
                                                         "function": {"name": "", "arguments": ""}})
                call["id"] = piece.get("id") or call["id"]
                fn = piece.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
            invalid += choice.get("invalid_tool_calls") or []
    click.echo("")
    return "".join(parts), [calls[i] for i in sorted(calls)], invalid


def _tool_choice(value: Optional[str]) -> Any:
    if value is None or value in ("auto", "required", "none"):
        return value
    return {"type": "function", "function": {"name": value}}


def _load_tools(path: Optional[str]) -> Optional[List[Dict[str, Any]]]:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            tools = json.load(f)
    except (OSError, ValueError) as e:
        raise click.BadParameter(f"cannot read {path}: {e}", param_hint="--tools")
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise click.BadParameter("the file must hold a JSON list of tool definitions", param_hint="--tools")
    return tools


def _show_calls(calls: List[Dict[str, Any]], invalid: List[Dict[str, Any]]) -> None:
    for call in calls:
        fn = call["function"]
        click.echo(click.style(f"  -> tool call {fn['name']}({fn['arguments']})", fg="cyan"))
    for bad in invalid:
        click.echo(click.style(f"  !! not a valid tool call ({bad.get('error')})", fg="yellow"))


def _tool_results(calls: List[Dict[str, Any]]) -> Optional[List[Dict[str, Any]]]:
    """Asks for each call's result; None if the user leaves instead."""
    results = []
    for call in calls:
        try:
            text = click.prompt(_bold(f"Result of {call['function']['name']}:"), prompt_suffix=" ",
                                default="", show_default=False)
        except (EOFError, click.Abort):
            click.echo("")
            return None
        results.append({"role": "tool", "tool_call_id": call["id"], "content": text})
    return results


@client_command()
@endpoint_option
@click.option("--model-uid", "-u", required=True)
@click.option("--max-tokens", default=256, show_default=True, type=int)
@click.option("--temperature", default=None, type=float)
@click.option("--system", default=None, help="A system prompt.")
@click.option("--tools", "tools_file", default=None, type=click.Path(dir_okay=False),
              help="A JSON file of OpenAI tool definitions the model may call; you type each call's result.")
@click.option("--tool-choice", default=None,
              help="auto (the default with --tools), required, none, or a function's name to force.")
def chat(endpoint, model_uid, max_tokens, temperature, system, tools_file, tool_choice) -> None:
    """Chat with a model (streaming); the conversation is kept. Type exit to leave."""
    history: List[Dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    tools = _load_tools(tools_file)
    if tool_choice is not None and tools is None:
        raise click.BadParameter("needs --tools", param_hint="--tool-choice")
    with cluster(endpoint) as client:
        model = client.get_model(model_uid)
        if not hasattr(model, "chat"):
            fail(RuntimeError(f"Model {model_uid} cannot chat; use `xinference generate`."))
        for text in _prompts("User:"):
            history.append({"role": "user", "content": text})
            turn = len(history)
            choice = _tool_choice(tool_choice)
            while True:
                cfg = _sampling(max_tokens, temperature)
                if choice is not None:
                    cfg["tool_choice"] = choice
                click.echo(_bold("Assistant:") + " ", nl=False)
                try:
                    reply, calls, invalid = _stream_reply(model.chat(history, tools, generate_config=cfg))  # type: ignore[attr-defined]
                except RuntimeError as e:
                    del history[turn - 1:]
                    click.echo(f"Error: {e}", err=True)
                    break
                _show_calls(calls, invalid)
                history.append({"role": "assistant", "content": reply, **({"tool_calls": calls} if calls else {})})
                results = _tool_results(calls) if calls else None
                if not results:
                    break
                history += results
                choice = None  # after the results the model answers, or calls again, as it sees fit
