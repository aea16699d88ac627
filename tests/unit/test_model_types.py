"""The model-type registry (model/plans.py): each entry agrees with its own folder, and
a plan of each type survives the trip between processes as a dict."""

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.plans import MODEL_TYPES, get_model_type, load_plan, plan_model, serving_type

EXAMPLES = {"LLM": "gemma-3", "embedding": "all-MiniLM-L6-v2", "rerank": "bge-reranker-base"}


@pytest.mark.parametrize("name", sorted(MODEL_TYPES))
def test_an_entry_agrees_with_its_plan_and_catalogue(name):
    kind = MODEL_TYPES[name]
    assert kind.plan.model_fields["model_type"].default == name == kind.catalogue.kind
    assert kind.catalogue.families() and all(serving_type(e) is kind for e in kind.endpoints)
    plan = plan_model(name.upper(), model_name=EXAMPLES[name])
    again = load_plan(plan.model_dump())
    assert type(again) is kind.plan and again == plan
    assert plan.describe_fields()["model_type"] == name


def test_an_unknown_type_is_a_400():
    with pytest.raises(InvalidRequestError) as info:
        get_model_type("image")
    assert info.value.param == "model_type" and "LLM, embedding, rerank" in info.value.message
    assert get_model_type(None).name == "LLM"
