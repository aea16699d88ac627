"""Builtin families of any model type: read from JSON once, looked up by name."""

import difflib
import json
from pathlib import Path
from typing import Dict, Type, TypeVar

from pydantic import BaseModel

from ..errors import InvalidRequestError

F = TypeVar("F", bound=BaseModel)


def load_families(path: Path, cls: Type[F]) -> Dict[str, F]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    families = [cls.model_validate(item) for item in raw]
    return {f.model_name: f for f in families}  # type: ignore[attr-defined]


def find_family(families: Dict[str, F], model_name: str, unknown: str, listing: str) -> F:
    """The family called `model_name`, or a 400 that suggests close names:
    "{unknown} {name!r}. Did you mean: ...? {listing}"."""
    if model_name in families:
        return families[model_name]
    close = difflib.get_close_matches(model_name, list(families), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise InvalidRequestError(
        f"{unknown} {model_name!r}.{hint} {listing}",
        param="model_name",
        code="model_not_found",
    )
