"""The launch form's choices, read from `/v1/engines/{model_name}`, and its free-text
fields turned into launch arguments. Pure functions: the form is tested without Gradio.

`engines` is the engines query's answer: {engine: [{"model_format", "model_size_in_billions",
"quantizations", ...}, ...]}. Sizes are strings in the form ("0_27", "7") and go back to
the server as the value the catalogue gave (the string "0_27" or the number 7).
"""

import json
import shlex
from typing import Any, Dict, List, Optional, Tuple

Engines = Dict[str, List[Dict[str, Any]]]
MODEL_TYPES = ("LLM", "embedding", "rerank")


def _dedupe(items: List[str]) -> List[str]:
    return list(dict.fromkeys(items))


def size_label(size: Any) -> str:
    return str(size)


def engine_choices(engines: Engines) -> List[str]:
    return [name for name, specs in engines.items() if specs]


def format_choices(engines: Engines, engine: Optional[str]) -> List[str]:
    return _dedupe([s["model_format"] for s in engines.get(engine or "", [])])


def _specs(engines: Engines, engine: Optional[str], fmt: Optional[str]) -> List[Dict[str, Any]]:
    return [s for s in engines.get(engine or "", []) if s["model_format"] == fmt]


def size_choices(engines: Engines, engine: Optional[str], fmt: Optional[str]) -> List[str]:
    return _dedupe([size_label(s["model_size_in_billions"]) for s in _specs(engines, engine, fmt)])


def quantization_choices(engines: Engines, engine: Optional[str], fmt: Optional[str],
                         size: Optional[str]) -> List[str]:
    quants: List[str] = []
    for spec in _specs(engines, engine, fmt):
        if size_label(spec["model_size_in_billions"]) == size:
            quants.extend(spec.get("quantizations") or [])
    return _dedupe(quants)


def size_value(engines: Engines, engine: Optional[str], fmt: Optional[str], size: Optional[str]) -> Any:
    """The catalogue's own value for a size label (None when nothing matches)."""
    for spec in _specs(engines, engine, fmt):
        if size_label(spec["model_size_in_billions"]) == size:
            return spec["model_size_in_billions"]
    return None


def first(choices: List[str], current: Optional[str] = None) -> Optional[str]:
    """Keep the user's choice when it is still offered, else take the first one."""
    if current in choices:
        return current
    return choices[0] if choices else None


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # a bare word such as a path or a chat format name


def parse_engine_kwargs(text: Optional[str]) -> Dict[str, Any]:
    """Extra engine arguments: a JSON object, or `key=value` pairs separated by spaces or
    newlines, where a value that reads as JSON (numbers, true, lists) is taken as such."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise ValueError(f"the extra engine arguments are not valid JSON: {e}") from None
        if not isinstance(value, dict):
            raise ValueError("the extra engine arguments must be a JSON object")
        return value
    out: Dict[str, Any] = {}
    try:
        tokens = shlex.split(text)
    except ValueError as e:
        raise ValueError(f"cannot read the extra engine arguments: {e}") from None
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{token!r} is not key=value")
        out[key.strip()] = _scalar(value)
    return out


RUNNING_COLUMNS = ("uid", "name", "type", "engine", "format", "size", "quantization", "replicas", "status")


def running_row(uid: str, desc: Dict[str, Any]) -> List[str]:
    """One model of `/v1/models` as the running table shows it."""
    return [
        uid,
        str(desc.get("model_name") or ""),
        str(desc.get("model_type") or ""),
        str(desc.get("model_engine") or "—"),
        str(desc.get("model_format") or "—"),
        "—" if desc.get("model_size_in_billions") is None else size_label(desc["model_size_in_billions"]),
        str(desc.get("quantization") or "—"),
        str(desc.get("replica", "")),
        str(desc.get("status") or ""),
    ]


def running_rows(models: Dict[str, Dict[str, Any]]) -> List[List[str]]:
    """Models in launch order; LoRA adapters are served by their parent and not listed."""
    items = [(uid, d) for uid, d in models.items() if not d.get("parent")]
    items.sort(key=lambda item: (item[1].get("created") or 0, item[0]))
    return [running_row(uid, d) for uid, d in items]


def chat_models(models: Dict[str, Dict[str, Any]]) -> List[str]:
    """Model ids that can chat: running LLMs with the chat ability, LoRA adapters included."""
    return sorted(
        uid for uid, d in models.items()
        if d.get("model_type") == "LLM" and "chat" in (d.get("model_ability") or [])
        and d.get("status", "READY") == "READY"
    )


def can_call_tools(models: Optional[Dict[str, Dict[str, Any]]], uid: Optional[str]) -> bool:
    """Whether a running model's family has the "tools" ability (OpenAI tool calling)."""
    desc = (models or {}).get(uid or "") or {}
    return "tools" in (desc.get("model_ability") or [])


def launch_progress_bar(progress: float, width: int = 20) -> Tuple[str, int]:
    """A text bar and the whole percent, for a Markdown status line."""
    progress = min(max(progress, 0.0), 1.0)
    filled = int(round(progress * width))
    return "█" * filled + "░" * (width - filled), int(progress * 100)
