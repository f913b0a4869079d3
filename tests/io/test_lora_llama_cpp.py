"""llama.cpp (llama-cpp-python's ``lora_path`` and ``lora_scale``) applies our GGUF LoRA
adapter to our GGUF base export as PEFT applies the adapter to the transformers model:

- logits of a 64-token prompt within 1e-2 of PEFT's (f32 files; for ``llama`` this proves
  that B's Q/K rows follow the base's reordering);
- greedy decoding of 32 tokens equals ours on the merged weights;
- at scale 0 the adapter is off: llama.cpp gives the base file's logits;
- llama.cpp's own convert_lora_to_gguf.py, run on PEFT's adapter, writes the tensors ours
  writes (names, shapes, values), and its file reads back as PEFT's tensors. Not for GPT-2:
  that converter (0.3.36) gives a Conv1D weight's A the out-features, a file llama.cpp
  refuses ("incorrect shape"), and so do we.
Bases and adapters: helpers/lora.py (random Llama with GQA, Qwen2, GPT-2 and PEFT adapters).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from helpers.env import child_env, require
from helpers.llamacpp import llama, llama_logits
from helpers.lora import TARGETS, logits, write_lora_case

from pyggml_train import ggml as G
from pyggml_train.io import export_adapter, export_model
from pyggml_train.io.lora import merge_lora
from pyggml_train.models import from_config, read_adapter
from pyggml_train.sample import KVCacheDecoder, generate

pytestmark = pytest.mark.slow  # runs llama.cpp

PROMPT, NEW = 64, 32
# max |llama.cpp - PEFT| (logit scales 4-10); GPT-2's GELU goes through ggml's f16 table
LOGIT_TOL = 1e-2


@pytest.fixture(scope="module", params=sorted(TARGETS))
def files(request, tmp_path_factory):
    """(case, adapter, base GGUF, adapter GGUF) of one base."""
    path = tmp_path_factory.mktemp(request.param)
    case = write_lora_case(path, request.param, n_ids=PROMPT)
    base = case.base
    lora = read_adapter(case.peft_dir, base.config)
    base_gguf = export_model(path / "base.gguf", "gguf", base.params, base.config, base.tokenizer)
    adapter_gguf = export_adapter(path / "adapter.gguf", "gguf-lora", lora, base.config)
    return case, lora, base_gguf, adapter_gguf


def test_llama_cpp_with_our_adapter_gives_peft_logits(files):
    case, _, base_gguf, adapter_gguf = files
    prompt = case.ids[0].tolist()
    got = llama_logits(llama(base_gguf, lora_path=str(adapter_gguf)), prompt)
    want = logits(case.peft_model(), case.ids)[0]
    base = logits(case.base_model(), case.ids)[0]
    err = np.abs(got - want).max()
    print(
        f"{case.name}: logit scale {np.abs(want).max():.1f}, adapter's effect "
        f"{np.abs(want - base).max():.1f}, max |llama.cpp - PEFT| {err:.1e}"
    )
    assert err < LOGIT_TOL


def test_llama_cpp_greedy_decoding_with_the_adapter_equals_ours_merged(files):
    case, lora, base_gguf, adapter_gguf = files
    merged = merge_lora(case.base.params, lora, case.base.config)
    model = from_config(case.base.config, merged, G.Context(threads=2))
    prompt = case.ids[0].tolist()
    ours = generate(KVCacheDecoder(model), prompt, NEW, temperature=0.0)[PROMPT:]
    llm = llama(base_gguf, lora_path=str(adapter_gguf))
    theirs = []
    llm.reset()
    llm.eval(prompt)
    for _ in range(NEW):
        theirs.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([theirs[-1]])
    assert theirs == ours


def test_llama_cpp_at_scale_0_gives_the_base_logits(files):
    case, _, base_gguf, adapter_gguf = files
    prompt = case.ids[0].tolist()
    off = llama_logits(llama(base_gguf, lora_path=str(adapter_gguf), lora_scale=0.0), prompt)
    base = llama_logits(llama(base_gguf), prompt)
    assert np.array_equal(off, base)
    assert np.abs(off - logits(case.base_model(), case.ids)[0]).max() < LOGIT_TOL


LLAMA_CPP_VERSION = "0.3.36"  # the one scripts/install_test_components.sh installs
# where scripts/install_test_components.sh unpacks llama.cpp's converters
CONVERTERS = Path(
    os.environ.get("PYGGML_LLAMA_CPP_CONVERTER")
    or Path(os.environ.get("PYGGML_CACHE_DIR") or Path.home() / ".cache" / "pyggml_train")
    / f"llama-cpp-converter-{LLAMA_CPP_VERSION}"
    / "convert_hf_to_gguf.py"
).parent

# the script imports conversion/ and gguf-py/ from beside itself, which the children's
# PYTHONSAFEPATH keeps off the path
CONVERT = """
import runpy, sys
script = sys.argv[1]
root = __import__("pathlib").Path(script).parent
sys.path[:0] = [str(root), str(root / "gguf-py")]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def test_llama_cpp_converter_writes_our_adapter_tensors(files, tmp_path):
    case, lora, _, adapter_gguf = files
    script = CONVERTERS / "convert_lora_to_gguf.py"
    require(
        script.is_file(),
        f"llama.cpp's convert_lora_to_gguf.py is not at {script}: "
        "scripts/install_test_components.sh unpacks it from the llama-cpp-python sdist",
    )
    out = tmp_path / "converted.gguf"
    done = subprocess.run(
        [sys.executable, "-c", CONVERT, str(script), "--base", str(case.base_dir),
         "--outfile", str(out), str(case.peft_dir)],
        capture_output=True, text=True, env=child_env(), timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    if case.name == "gpt2":
        with pytest.raises(ValueError, match=r"transformer.h.0.attn.c_attn.weight is 32 -> 96"):
            read_adapter(out, case.base.config)
        return
    theirs = {t.name: t for t in gguf.GGUFReader(out).tensors}
    ours = {t.name: t for t in gguf.GGUFReader(adapter_gguf).tensors}
    assert sorted(theirs) == sorted(ours)
    for name, t in ours.items():
        assert list(theirs[name].shape) == list(t.shape), name
        assert np.array_equal(np.asarray(theirs[name].data, np.float32), t.data), name
    back = read_adapter(out, case.base.config)
    assert back.config.rank == lora.config.rank and back.config.alpha == lora.config.alpha
    for name in lora.a:
        assert np.array_equal(back.a[name], lora.a[name])
        assert np.array_equal(back.b[name], lora.b[name])
