"""Model families a cluster can launch: the builtin catalogue plus users' registrations.

Registrations are kept by the supervisor and, when persisted, written to
`$XINFERENCE_HOME/model/<type>/<name>.json` and read again at start. A launch plan
carries its whole family, so workers need no copy of the registry.
"""

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pydantic import BaseModel, ValidationError

from .. import constants
from ..errors import ConflictError, InvalidRequestError, ModelNotFoundError
from .catalogue import find_family
from .plans import families, family_class, model_type_name

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_LISTING = {"LLM": "`xinference registrations -t LLM`",
            "embedding": "`xinference registrations -t embedding`",
            "rerank": "`xinference registrations -t rerank`"}


class Registration(BaseModel):
    model: Dict[str, Any]
    worker_ip: Optional[str] = None


def registry_dir() -> Path:
    return Path(os.environ.get("XINFERENCE_HOME", constants.XINFERENCE_HOME)) / "model"


class ModelRegistry:
    def __init__(self, root: Optional[Path] = None):
        self._root = root or registry_dir()
        # model type -> name -> (family, worker_ip)
        self._custom: Dict[str, Dict[str, Tuple[BaseModel, Optional[str]]]] = {
            kind: {} for kind in _LISTING}

    def load_persisted(self) -> int:
        loaded = 0
        for kind in _LISTING:
            folder = self._root / kind
            for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                try:
                    saved = Registration.model_validate_json(path.read_text(encoding="utf-8"))
                    family = family_class(kind).model_validate(saved.model)
                    self._custom[kind][family.model_name] = (family, saved.worker_ip)  # type: ignore[attr-defined]
                    loaded += 1
                except (OSError, ValueError) as e:
                    logger.error("skipping registration %s: %s", path, e)
        return loaded

    def families(self, model_type: str) -> Dict[str, BaseModel]:
        kind = model_type_name(model_type)
        return {**families(kind), **{n: f for n, (f, _) in self._custom[kind].items()}}

    def get(self, model_type: str, model_name: str) -> BaseModel:
        kind = model_type_name(model_type)
        return find_family(self.families(kind), model_name, f"Unknown {kind} model name",
                           f"List them with {_LISTING[kind]}.")

    def worker_ip(self, model_type: str, model_name: str) -> Optional[str]:
        found = self._custom[model_type_name(model_type)].get(model_name)
        return found[1] if found else None

    def is_custom(self, model_type: str, model_name: str) -> bool:
        return model_name in self._custom[model_type_name(model_type)]

    def rows(self, model_type: str, detailed: bool) -> List[Dict[str, Any]]:
        kind = model_type_name(model_type)
        rows = []
        for name, family in sorted(self.families(kind).items()):
            row: Dict[str, Any] = {"model_name": name, "is_builtin": not self.is_custom(kind, name)}
            if detailed:
                row.update(family.model_dump())
            rows.append(row)
        return rows

    def register(self, model_type: str, model: Any, persist: bool, worker_ip: Optional[str]) -> BaseModel:
        kind = model_type_name(model_type)
        family = parse_family(kind, model)
        name = family.model_name  # type: ignore[attr-defined]
        if not _NAME_RE.match(name):
            raise InvalidRequestError(
                f"model_name {name!r} must be 1-100 letters, digits, '.', '_' or '-', starting "
                "with a letter or digit.", param="model.model_name")
        if name in families(kind):
            raise ConflictError(f"{name!r} is a builtin {kind} model; register under another name.",
                                param="model.model_name")
        if name in self._custom[kind]:
            raise ConflictError(f"A {kind} model named {name!r} is registered already; "
                                "unregister it first.", param="model.model_name")
        _check_sources(kind, family)
        if persist:
            path = self._root / kind / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            record = Registration(model=family.model_dump(), worker_ip=worker_ip)
            path.write_text(record.model_dump_json(indent=1), encoding="utf-8")
        self._custom[kind][name] = (family, worker_ip)
        return family

    def unregister(self, model_type: str, model_name: str) -> None:
        kind = model_type_name(model_type)
        if model_name not in self._custom[kind]:
            if model_name in families(kind):
                raise InvalidRequestError(f"{model_name!r} is a builtin model; only registered "
                                          "models can be unregistered.", param="model_name")
            raise ModelNotFoundError(f"No registered {kind} model named {model_name!r}.",
                                     param="model_name", code="model_not_found")
        del self._custom[kind][model_name]
        (self._root / kind / f"{model_name}.json").unlink(missing_ok=True)


def parse_family(kind: str, model: Any) -> BaseModel:
    """A registration's `model` (a JSON string, as xinference-client sends it, or an
    object) as a family; a 400 that names the field otherwise."""
    if isinstance(model, str):
        try:
            model = json.loads(model)
        except ValueError as e:
            raise InvalidRequestError(f"model is not valid JSON: {e}.", param="model") from None
    if not isinstance(model, dict):
        raise InvalidRequestError("model must be a JSON object describing the model.", param="model")
    try:
        return family_class(kind).model_validate(model)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "model"
        raise InvalidRequestError(f"Invalid {kind} model: {field}: {first['msg']}.",
                                  param=f"model.{field}") from None


def _check_sources(kind: str, family: Any) -> None:
    """Every spec must say where its weights are: a local model_uri or a hub model_id."""
    specs = family.model_specs if kind == "LLM" else [family]
    if kind == "LLM" and not specs:
        raise InvalidRequestError("model_specs must list at least one spec.", param="model.model_specs")
    for i, spec in enumerate(specs):
        if not spec.model_uri and not spec.model_src:
            where = f"model_specs[{i}]" if kind == "LLM" else "the model"
            raise InvalidRequestError(
                f"{where} needs model_uri (local weights on the worker, e.g. file:///models/x) "
                "or model_id (a repo on model_hub).", param="model.model_specs" if kind == "LLM" else "model.model_uri")
