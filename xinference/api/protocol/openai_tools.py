"""OpenAI's tool shapes: what a chat request declares and what its history carries."""

import json
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from jsonschema import validators
from jsonschema.exceptions import SchemaError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from .limits import Text

# OpenAI's limits: at most 128 tools; names of letters, digits, _ and -, up to 64.
MAX_TOOLS = 128
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"
# The declared tools' JSON, all together (they are rendered into every prompt).
MAX_TOOLS_CHARS = 256 * 1024


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=FUNCTION_NAME)
    description: Optional[Text] = None
    parameters: Optional[Dict[str, Any]] = None
    strict: Optional[bool] = None

    @field_validator("parameters")
    @classmethod
    def _a_schema_of_an_object(cls, v: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        if v is None:
            return v
        if v.get("type", "object") != "object":
            raise ValueError('parameters must be a JSON schema of "type": "object"')
        try:
            validators.validator_for(v).check_schema(v)
        except SchemaError as e:
            raise ValueError(f"parameters is not a valid JSON schema: {e.message}") from None
        except RecursionError:
            raise ValueError("parameters is nested too deeply") from None
        return v


class ToolDefinition(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str = Field(max_length=64)


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Union[Literal["none", "auto", "required"], NamedToolChoice]


class CalledFunction(BaseModel):
    name: str = Field(max_length=256)
    # JSON text, as OpenAI sends it; some clients send the object itself
    arguments: Union[Text, Dict[str, Any]] = ""


class AssistantToolCall(BaseModel):
    """A call in the history: an earlier answer of the model, sent back."""

    id: str = Field(default="", max_length=256)
    type: Literal["function"] = "function"
    function: CalledFunction


def check_tools(tools: Optional[List[ToolDefinition]]) -> None:
    """Unique names, and a bound on their size (they go into every prompt)."""
    names = [t.function.name for t in tools or []]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"the function {dup!r} is declared twice")
    if tools and len(json.dumps([t.model_dump(exclude_none=True) for t in tools])) > MAX_TOOLS_CHARS:
        raise ValueError(f"the tools take more than {MAX_TOOLS_CHARS} characters of JSON")


def _checked(tools: List[ToolDefinition]) -> List[ToolDefinition]:
    check_tools(tools)
    return tools


# A request's `tools`: at most MAX_TOOLS, checked by check_tools.
ToolList = Annotated[List[ToolDefinition], Field(max_length=MAX_TOOLS), AfterValidator(_checked)]


def check_choice(choice: Optional[ToolChoice], tools: Optional[List[ToolDefinition]]) -> None:
    """A choice that forces or allows calls needs tools, and a named one must be declared."""
    if choice is None or choice == "none":
        return
    if not tools:
        raise ValueError("tool_choice needs tools: declare the functions the model may call")
    names = [t.function.name for t in tools]
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise ValueError(f"it names {choice.function.name!r}, which is not among the tools "
                         f"({', '.join(names)})")


def tool_use(tools: Optional[List[ToolDefinition]], choice: Optional[ToolChoice],
             parallel: Optional[bool]) -> Optional[Dict[str, Any]]:
    """SamplingParams.tool_use for the request; None when no tool may be called."""
    if not tools or choice == "none":
        return None
    forced = choice.function.name if isinstance(choice, NamedToolChoice) else (choice or "auto")
    return {"tools": [t.model_dump(exclude_none=True) for t in tools], "choice": forced,
            "parallel": True if parallel is None else parallel}
