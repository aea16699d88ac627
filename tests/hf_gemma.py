"""The embedded Gemma 3 270M GGUF as a Hugging Face folder, for engines that load only
folders (vLLM), built at test time with transformers' GGUF loader.

Three things the conversion needs: `accelerate` (transformers dequantizes through it),
dropping the GGUF quantization config before saving (the saved weights are plain
bfloat16, and a folder claiming GGUF quantization does not load), and `add_bos_token`
on the tokenizer (the GGUF's tokenizer does not add BOS, and Gemma without BOS writes
garbage).
"""

import os
import shutil
import tempfile


def build_gemma_folder(gguf_path: str, out_dir) -> str:
    """Converts into out_dir unless a complete conversion is there (written to a temp
    folder, then renamed: a folder at out_dir is always complete)."""
    out = os.fspath(out_dir)
    if os.path.isfile(os.path.join(out, "model.safetensors")):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gemma-hf-", dir=os.path.dirname(out))
    try:
        _convert(gguf_path, tmp)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _convert(gguf_path: str, out: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    real = os.path.realpath(gguf_path)
    folder, name = os.path.dirname(real), os.path.basename(real)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name, add_bos_token=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    for obj in (model.config, getattr(model, "generation_config", None)):
        if obj is not None and hasattr(obj, "quantization_config"):
            delattr(obj, "quantization_config")
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model.save_pretrained(out)
    tok.save_pretrained(out)
