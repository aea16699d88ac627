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
from .plans import MODEL_TYPES, families, family_class, get_model_type, model_type_name

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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
            kind: {} for kind in MODEL_TYPES}

    def load_persisted(self) -> int:
        loaded = 0
        for kind in MODEL_TYPES:
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
        """A family to launch: a 400 that suggests close names when there is none."""
        kind = get_model_type(model_type)
        return kind.catalogue.find(self.families(kind.name), model_name)

    def registration(self, model_type: str, model_name: str) -> Dict[str, Any]:
        """GET /v1/model_registrations/{type}/{name}: the family and whether it is builtin;
        a 404 that suggests close names when there is none."""
        kind = get_model_type(model_type)
        family = find_family(self.families(kind.name), model_name, f"No {kind.name} model named",
                             f"List them with {kind.catalogue.listing}.", ModelNotFoundError)
        return {**family.model_dump(), "is_builtin": not self.is_custom(kind.name, model_name)}

    def engines(self, model_name: str, model_type: Optional[str] = None) -> List[Dict[str, Any]]:
        """GET /v1/engines: per engine, what it can run of the family (none for a type
        without engines)."""
        kind = get_model_type(model_type)
        return kind.engines(self.get(kind.name, model_name)) if kind.engines else []

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
        family.check_sources()  # type: ignore[attr-defined]
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
