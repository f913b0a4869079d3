"""llama.cpp (llama-cpp-python) on a GGUF we wrote: load it and read its logits."""

from __future__ import annotations

import numpy as np

from helpers.env import require

try:
    import llama_cpp
except ImportError:
    llama_cpp = None


def llama(path, **kwargs):
    """llama.cpp on the GGUF at path with an f32 KV cache; kwargs go to ``Llama`` (e.g.
    ``lora_path``, ``lora_scale``)."""
    require(
        llama_cpp is not None,
        "llama-cpp-python missing: run scripts/install_test_components.sh",
    )
    f32 = llama_cpp.GGML_TYPE_F32
    return llama_cpp.Llama(
        str(path),
        n_ctx=256,
        n_threads=2,
        logits_all=True,
        verbose=False,
        type_k=f32,
        type_v=f32,
        **kwargs,
    )


def llama_logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float64)  # (T, V)
