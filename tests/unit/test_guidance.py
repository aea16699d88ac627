"""Grammar masks (engines/guidance.py): masks computed for a batch together are the ones
each constraint computes alone, and a mask computed ahead never outlives its token."""

import json

import numpy as np
import pytest

from xinference.model.llm.engines.guidance import Constraint, compute_masks, grammar_of
from xinference.types import SamplingParams

pytest.importorskip("llguidance")
transformers = pytest.importorskip("transformers")

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                           "tags": {"type": "array", "items": {"type": "string"}}}}


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    from llguidance.hf import from_tokenizer

    hf = transformers.AutoTokenizer.from_pretrained(tiny_llama)
    return hf, from_tokenizer(hf)


def test_batch_masks_match_single_masks_at_every_step(tokenizer):
    hf, lltok = tokenizer
    grammar = grammar_of(SamplingParams(json_schema=SCHEMA), lambda text: None)
    text = json.dumps({"name": "Ada", "tags": ["x", "yz"]})
    ids = lltok.tokenize_str(text)
    width = lltok.vocab_size + 5  # a model row wider than the tokenizer
    batch = [Constraint(lltok, grammar, "response_format") for _ in range(3)]
    alone = [Constraint(lltok, grammar, "response_format") for _ in range(3)]
    *head, last = ids
    for step, token in enumerate(head):
        compute_masks(batch)
        for b, a in zip(batch, alone):
            got, want = b.allowed(width), a.allowed(width)
            assert np.array_equal(got, want), step
            # the one-token check agrees with the mask, both ways
            refused = int(np.flatnonzero(~want)[0])
            assert a.allows(token) and not a.allows(refused) and not a.allows(width - 1)
            assert got[token] and not got[lltok.vocab_size:].any()
            row = np.zeros(width, dtype=np.float32)
            b.apply(row)
            assert np.isneginf(row[~want]).all() and (row[want] == 0).all()
        for c in batch + alone:
            c.accept(token)
    # a mask computed ahead belongs to its state: once its token is taken, the next
    # state's mask is computed (here: only the end may follow the closing brace)
    compute_masks(batch)
    assert batch[0].allowed(width)[last]
    batch[0].accept(last)
    assert batch[0].done and not batch[0].allowed(width)[last]
