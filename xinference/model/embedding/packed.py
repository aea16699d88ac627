"""A packed forward pass for BERT-style encoders: no compute spent on padding.

A dynamic batch mixes inputs of every length. Padded to the longest, the position-wise
layers (the Q/K/V, output and feed-forward matrices: nearly all the work) would also
run on the pad positions, which on short, varied inputs is a third of the batch or
more. Here the tokens of every input are concatenated into one `[tokens, hidden]`
matrix that those layers run on; only attention, which needs each input's own
positions, sees a padded `[batch, heads, longest, head_dim]` view, built by a scatter
and read back by a gather. The pooling and normalisation modules of the
sentence-transformers pipeline then run on the re-padded last layer, as they would
after the model's own forward.

It serves BERT, RoBERTa and XLM-RoBERTa encoders in eval mode with absolute
positions, followed only by pooling, normalisation or dense modules. Any other model
keeps the padded forward. `attach` also checks the packed output against the model's
own forward on a small mixed batch and keeps the padded path on any mismatch.

Imported by the embedding model's `load()` only (torch is a heavy import).
"""

import logging
from typing import Any, Callable, List, Optional

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

_PIPELINE_TAIL = ("Pooling", "Normalize", "Dense")
# position ids of RoBERTa-style embeddings start after the padding index
_ROBERTA_STYLE = ("RobertaModel", "XLMRobertaModel")
_ENCODERS = ("BertModel",) + _ROBERTA_STYLE


class PackedEncoder:
    def __init__(self, pipeline: Any, encoder: Any):
        self.pipeline = pipeline
        self.encoder = encoder
        config = encoder.config
        self.heads = int(config.num_attention_heads)
        self.hidden = int(config.hidden_size)
        self.first_position = (encoder.embeddings.padding_idx + 1
                               if type(encoder).__name__ in _ROBERTA_STYLE else 0)
        self.layers = list(encoder.encoder.layer)
        self.qkv = [_fuse_qkv(layer.attention.self) for layer in self.layers]

    @classmethod
    def attach(cls, pipeline: Any, padded: Callable[[List[List[int]]], Any]) -> Optional["PackedEncoder"]:
        """A packed forward for this sentence-transformers model, or None where the
        model is not a plain BERT-style encoder or its output differs from `padded`."""
        modules = list(pipeline)
        encoder = getattr(modules[0], "auto_model", None) if modules else None
        if encoder is None or type(modules[0]).__name__ != "Transformer":
            return None
        config = encoder.config
        if (type(encoder).__name__ not in _ENCODERS
                or getattr(config, "is_decoder", False)
                or getattr(config, "position_embedding_type", "absolute") != "absolute"
                or getattr(config, "output_hidden_states", False)
                or any(type(m).__name__ not in _PIPELINE_TAIL for m in modules[1:])):
            return None
        packed = cls(pipeline, encoder)
        vocab = int(config.vocab_size)
        # lengths that need padding in a batch, and a lone input
        probe = [[(7 * i + 3) % vocab for i in range(n)] for n in (9, 4, 13)]
        ours, theirs = packed(probe), padded(probe)
        tolerance = 1e-4 if ours.dtype == torch.float32 else 3e-2
        error = (ours.float() - theirs.float()).abs().max().item()
        if not error <= tolerance:
            logger.warning("Packed forward differs from %s's own by %.3g; using the padded forward.",
                           type(encoder).__name__, error)
            return None
        return packed

    @torch.inference_mode()
    def __call__(self, ids: List[List[int]]) -> Any:
        device = self.encoder.device
        lengths = [len(r) for r in ids]
        batch, longest, hidden, heads = len(ids), max(lengths), self.hidden, self.heads
        tokens = torch.tensor([t for r in ids for t in r], device=device)[None]
        positions = torch.tensor([self.first_position + p for n in lengths for p in range(n)], device=device)[None]
        mask = torch.arange(longest, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
        where = mask.reshape(-1).nonzero().squeeze(1)  # each packed token's place in the padded view
        key_mask = mask[:, None, None, :]
        h = self.encoder.embeddings(input_ids=tokens, position_ids=positions,
                                    token_type_ids=torch.zeros_like(tokens))[0]
        for layer, (weight, bias) in zip(self.layers, self.qkv):
            qkv = F.linear(h, weight, bias)
            view = qkv.new_zeros(batch * longest, 3 * hidden)
            view[where] = qkv
            q, k, v = view.view(batch, longest, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
            context = context.transpose(1, 2).reshape(batch * longest, hidden)[where]
            attended = layer.attention.output(context, h)
            h = layer.output(layer.intermediate(attended), attended)
        out = h.new_zeros(batch * longest, hidden)
        out[where] = h
        features = {"token_embeddings": out.view(batch, longest, hidden), "attention_mask": mask.long()}
        for module in list(self.pipeline)[1:]:
            features = module(features)
        return features["sentence_embedding"]


def _fuse_qkv(attention: Any) -> Any:
    """One [3*hidden, hidden] matrix for Q, K and V (one matrix product instead of
    three); the model's own Linear layers are re-pointed at its slices, so the
    weights are not held twice."""
    parts = (attention.query, attention.key, attention.value)
    weight = torch.cat([p.weight.detach() for p in parts])
    bias = torch.cat([p.bias.detach() for p in parts])
    rows = 0
    for part in parts:
        n = part.weight.shape[0]
        part.weight = torch.nn.Parameter(weight[rows:rows + n], requires_grad=False)
        part.bias = torch.nn.Parameter(bias[rows:rows + n], requires_grad=False)
        rows += n
    return weight, bias
