"""Request shapes of /v1/embeddings (OpenAI) and /v1/rerank (Xinference)."""

from typing import Any, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...constants import MAX_EMBEDDING_INPUTS, MAX_RERANK_DOCUMENTS
from .limits import Text, TokenIds


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    # a text, texts, token ids, or lists of token ids (the model's own vocabulary)
    input: Union[Text, List[Union[Text, int, TokenIds]]] = Field(
        description=f"at most {MAX_EMBEDDING_INPUTS} inputs per request")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(default=None, ge=1)
    # cut inputs longer than the model's limit instead of answering 400
    truncate: bool = False
    user: Optional[str] = None

    def inputs(self) -> List[Any]:
        """One entry per embedding: a text or a list of token ids."""
        raw = self.input
        if isinstance(raw, str):
            return [raw]
        if raw and all(isinstance(x, int) for x in raw):
            return [list(raw)]  # a single tokenized input
        if any(isinstance(x, int) for x in raw):
            raise ValueError("input mixes token ids and texts")
        return list(raw)

    @field_validator("input")
    @classmethod
    def _not_empty(cls, v: Any) -> Any:
        if v == "" or v == []:
            raise ValueError("input must not be empty")
        # a list of ints is one tokenized input; any other list holds one input per item
        count = 1 if isinstance(v, str) or all(isinstance(x, int) for x in v) else len(v)
        if count > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"input has {count} items; one request may embed at most "
                             f"{MAX_EMBEDDING_INPUTS}: send them in several requests")
        return v


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    query: Text
    documents: List[Text] = Field(max_length=MAX_RERANK_DOCUMENTS)
    top_n: Optional[int] = None
    return_documents: Optional[bool] = None
    return_len: Optional[bool] = None
    # sent by xinference-client; documents are never split here
    max_chunks_per_doc: Optional[int] = None
