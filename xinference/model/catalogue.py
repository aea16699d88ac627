"""Builtin families of any model type: read from JSON once, looked up by name."""

import difflib
import json
from pathlib import Path
from typing import Dict, Generic, Optional, Type, TypeVar

from pydantic import BaseModel

from ..errors import InvalidRequestError, XinferenceError

F = TypeVar("F", bound=BaseModel)


def load_families(path: Path, cls: Type[F]) -> Dict[str, F]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    families = [cls.model_validate(item) for item in raw]
    return {f.model_name: f for f in families}  # type: ignore[attr-defined]


def find_family(families: Dict[str, F], model_name: str, unknown: str, listing: str,
                error: Type[XinferenceError] = InvalidRequestError) -> F:
    """The family called `model_name`, or an `error` (a 400) that suggests close names:
    "{unknown} {name!r}. Did you mean: ...? {listing}"."""
    if model_name in families:
        return families[model_name]
    close = difflib.get_close_matches(model_name, list(families), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise error(
        f"{unknown} {model_name!r}.{hint} {listing}",
        param="model_name",
        code="model_not_found",
    )


class Catalogue(Generic[F]):
    """A model type's family class and its builtin families, from the JSON file next to
    its code (read once)."""

    def __init__(self, kind: str, path: Path, cls: Type[F]):
        self.kind = kind  # the model type, as requests spell it
        self.path = path
        self.cls = cls
        self._families: Optional[Dict[str, F]] = None

    @property
    def listing(self) -> str:
        """The command that lists this type's families, for error messages."""
        return f"`xinference registrations -t {self.kind}`"

    def families(self) -> Dict[str, F]:
        if self._families is None:
            self._families = load_families(self.path, self.cls)
        return self._families

    def find(self, families: Dict[str, F], model_name: str) -> F:
        """`model_name` among `families` (builtin or registered ones of this type); a 400
        that suggests close names otherwise."""
        return find_family(families, model_name, f"Unknown {self.kind} model name",
                           f"List them with {self.listing}.")

    def get(self, model_name: str) -> F:
        """The builtin family called `model_name`."""
        return self.find(self.families(), model_name)
