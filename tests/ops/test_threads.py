"""Threads on a busy machine (issue 21 item 10): ggml's threads sleep at their barriers
instead of spinning, and one-token decoding of a small model uses one thread."""

import subprocess
import sys

import numpy as np
import pytest
from helpers.env import child_env

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config
from pyggml_train.gpt2 import GPT2
from pyggml_train.sample import ONE_THREAD_DECODE_PARAMS, KVCacheDecoder, decode_threads

pytestmark = pytest.mark.slow  # child processes


POLICY = "import os, pyggml_train; print(os.environ['OMP_WAIT_POLICY'])"


def policy_seen(**env: str) -> str:
    base = {k: v for k, v in child_env().items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", POLICY], capture_output=True, text=True,
                          env={**base, **env}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_threads_sleep_at_barriers_unless_the_user_says_otherwise():
    assert policy_seen() == "passive"
    assert policy_seen(OMP_WAIT_POLICY="active") == "active"


def test_a_small_model_decodes_on_one_thread_and_the_context_keeps_its_count():
    cfg = GPT2Config(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = GPT2(cfg, ctx=G.Context("cpu", 2), seed=0)
    assert model.num_params() < ONE_THREAD_DECODE_PARAMS and decode_threads(model) == 1
    decoder = KVCacheDecoder(model)
    logits = decoder.prefill([1, 2, 3])
    assert model.ctx.threads == 2  # training graphs on this context keep their 2 threads
    want = model.forward(np.array([[1, 2, 3]]))[0, -1]  # (V,) the full graph's last row
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-5)


def test_a_large_model_decodes_on_the_context_threads():
    cfg = GPT2Config(vocab_size=50257, block_size=64, n_layer=4, n_head=4, n_embd=256)
    model = GPT2(cfg, ctx=G.Context("cpu", 2), seed=0)
    assert model.num_params() >= ONE_THREAD_DECODE_PARAMS and decode_threads(model) == 2
