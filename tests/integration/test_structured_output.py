"""Schema-shaped JSON from the real server on the llama.cpp engine (the embedded Gemma),
through the `openai` SDK and instructor: every answer validates, whatever the sampling."""

import json

import jsonschema
import pytest

openai = pytest.importorskip("openai")

ANIMAL = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 16},
    "legs": {"type": "integer", "minimum": 0, "maximum": 8},
    "kind": {"type": "string", "enum": ["mammal", "bird", "fish"]}},
    "required": ["name", "legs", "kind"]}
ASK = [{"role": "user", "content": "Describe a cat as JSON."}]


@pytest.fixture
def client(api):
    return openai.OpenAI(base_url=f"{api}/v1", api_key="none", max_retries=0)


@pytest.mark.parametrize("seed", range(3))
def test_json_schema_answers_validate_and_hold_no_extra_keys(client, seed):
    r = client.chat.completions.create(
        model="gemma", messages=ASK, max_tokens=80, temperature=1.0, seed=seed,
        response_format={"type": "json_schema", "json_schema": {"name": "animal", "schema": ANIMAL}})
    assert r.choices[0].finish_reason == "stop"
    data = json.loads(r.choices[0].message.content)
    jsonschema.validate(data, ANIMAL)
    assert set(data) == {"name", "legs", "kind"}  # properties listed: no others


def test_json_object_with_a_schema_field_is_held_to_that_schema(client):
    """llama-cpp-python's convention (older instructor versions send it): the schema is
    not dropped for 'any object'."""
    r = client.chat.completions.create(model="gemma", messages=ASK, max_tokens=80, temperature=0.7,
                                       seed=1, extra_body={"response_format": {
                                           "type": "json_object", "schema": ANIMAL}})
    jsonschema.validate(json.loads(r.choices[0].message.content), ANIMAL)


def test_instructor_gets_its_pydantic_model(client):
    instructor = pytest.importorskip("instructor")
    from pydantic import BaseModel, Field

    class Animal(BaseModel):
        name: str = Field(max_length=16)
        legs: int = Field(ge=0, le=8)

    # JSON-schema mode sends the model's schema as response_format json_schema
    patched = instructor.from_openai(client, mode=instructor.Mode.JSON_SCHEMA)
    for seed in range(2):
        animal = patched.chat.completions.create(model="gemma", messages=ASK, response_model=Animal,
                                                 max_tokens=80, temperature=1.0, seed=seed, max_retries=0)
        assert isinstance(animal, Animal) and 0 <= animal.legs <= 8


def test_a_schema_the_grammar_cannot_hold_is_a_400_that_says_so(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="gemma", messages=ASK, max_tokens=8,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
                "type": "object", "properties": {"a": {"$ref": "https://example.invalid/a.json"}}}}})
    assert "cannot be enforced" in str(err.value) and err.value.body["param"] == "response_format"
