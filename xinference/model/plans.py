"""Launch plans of every model type, and the one entry point that makes them.

A plan is what the supervisor checked and the worker and replica act on: it travels
between processes as a dict and comes back with `load_plan`, which picks the type by
`model_type`.
"""

from typing import Annotated, Any, Dict, Type, Union

from pydantic import BaseModel, Field, TypeAdapter

from ..errors import InvalidRequestError
from .embedding.family import EmbeddingFamily, builtin_embedding_families
from .embedding.launch import EmbeddingPlan, plan_embedding
from .llm.family import LLMFamily, builtin_families
from .llm.launch import LaunchPlan, plan_launch
from .rerank.family import RerankFamily, builtin_rerank_families
from .rerank.launch import RerankPlan, plan_rerank

AnyPlan = Annotated[Union[LaunchPlan, EmbeddingPlan, RerankPlan], Field(discriminator="model_type")]
_PLANS: TypeAdapter = TypeAdapter(AnyPlan)
MODEL_TYPES = {"llm": "LLM", "embedding": "embedding", "rerank": "rerank"}


def model_type_name(model_type: str) -> str:
    """The canonical spelling ("LLM", "embedding", "rerank"); 400 for anything else."""
    name = MODEL_TYPES.get((model_type or "LLM").lower())
    if name is None:
        raise InvalidRequestError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(MODEL_TYPES.values())}.",
            param="model_type",
        )
    return name


def plan_model(model_type: str, **request: Any) -> Any:
    kind = model_type_name(model_type)
    if kind == "LLM":
        return plan_launch(**request)
    if kind == "embedding":
        return plan_embedding(**request)
    return plan_rerank(**request)


def family_class(model_type: str) -> Type[BaseModel]:
    kind = model_type_name(model_type)
    classes: Dict[str, Type[BaseModel]] = {"LLM": LLMFamily, "embedding": EmbeddingFamily,
                                           "rerank": RerankFamily}
    return classes[kind]


def load_plan(data: Dict[str, Any]) -> Any:
    return _PLANS.validate_python(data)


def families(model_type: str) -> Dict[str, BaseModel]:
    kind = model_type_name(model_type)
    if kind == "LLM":
        return dict(builtin_families())
    if kind == "embedding":
        return dict(builtin_embedding_families())
    return dict(builtin_rerank_families())
