"""The model-type registry: one `ModelType` per kind of model the cluster runs.

Core asks it for everything type-specific: the supervisor plans a launch with
`plan_model`, the registry of families parses and lists them with `family_class` and
`families`, a plan that travels between processes as a dict comes back with
`load_plan`, and a replica learns which endpoints its model serves. A new type is a
folder `model/<type>/` (its catalogue, its `Plan`, the model the plan creates) and a
line in `MODEL_TYPES`.
"""

from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Type

from pydantic import BaseModel

from ..errors import InvalidRequestError
from .embedding import family as embedding
from .embedding.launch import EmbeddingPlan
from .llm import family as llm
from .llm.launch import LLMPlan, engine_params
from .model_type import ModelType, Plan
from .rerank import family as rerank
from .rerank.launch import RerankPlan

MODEL_TYPES: Mapping[str, ModelType] = MappingProxyType({t.name: t for t in (
    ModelType("LLM", LLMPlan, llm.CATALOGUE, ("/v1/chat/completions", "/v1/completions"), engine_params),
    ModelType("embedding", EmbeddingPlan, embedding.CATALOGUE, ("/v1/embeddings",)),
    ModelType("rerank", RerankPlan, rerank.CATALOGUE, ("/v1/rerank",)),
)})
# what a request that names no model_type launches
DEFAULT_MODEL_TYPE = "LLM"
_BY_SPELLING = MappingProxyType({name.lower(): kind for name, kind in MODEL_TYPES.items()})


def get_model_type(model_type: Optional[str]) -> ModelType:
    """The entry of a model type, spelt in any case; a 400 for an unknown one."""
    kind = _BY_SPELLING.get((model_type or DEFAULT_MODEL_TYPE).lower())
    if kind is None:
        raise InvalidRequestError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(MODEL_TYPES)}.",
            param="model_type",
        )
    return kind


def model_type_name(model_type: Optional[str]) -> str:
    """The canonical spelling ("LLM", "embedding", "rerank"); 400 for anything else."""
    return get_model_type(model_type).name


def serving_type(endpoint: str) -> ModelType:
    """The model type whose replicas serve `endpoint`."""
    return next(kind for kind in MODEL_TYPES.values() if endpoint in kind.endpoints)


def plan_model(model_type: Optional[str], **request: Any) -> Plan:
    return get_model_type(model_type).plan.from_request(**request)


def family_class(model_type: Optional[str]) -> Type[BaseModel]:
    return get_model_type(model_type).catalogue.cls


def families(model_type: Optional[str]) -> Dict[str, BaseModel]:
    """The builtin families of a type, by name."""
    return dict(get_model_type(model_type).catalogue.families())


def load_plan(data: Dict[str, Any]) -> Plan:
    """A plan from its dict (`Plan.model_dump()`), as the type it names."""
    return get_model_type(data.get("model_type")).plan.model_validate(data)
