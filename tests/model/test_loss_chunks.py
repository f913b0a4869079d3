"""The sparse loss head in row chunks (loss.ChunkedLossHead, config loss_chunk_rows): the
loss and every gradient against the float64 numpy reference; against the head in one piece
within a stated bound (bit for bit with one chunk), GPT-2 and Llama; and the compute
buffers of the chunked graphs hold one chunk's logits, not the (B*T, Vp) logits.

Bound, chunks against one piece (f32 both): each gradient within 1e-5 of its largest
magnitude (measured at most 7.8e-7 here: the sums over rows add up chunk by chunk, and a
chunk scales its gradient by seed_k / n_k instead of seed / N), the loss within 1e-6
(measured 3.6e-8).
"""

import dataclasses

import numpy as np
import pytest
from reference import gpt2_numpy as ref

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config, LlamaConfig
from pyggml_train.gpt2 import GPT2
from pyggml_train.hf_gpt2 import init_params
from pyggml_train.llama import Llama
from pyggml_train.loss import ChunkedLossHead, row_chunks

CHUNK_REL = 1e-5  # gradients, chunks against one piece
LOSS_REL = 1e-6
GRAD_REL = 1e-4  # f32 against the float64 reference (as tests/model/test_gpt2.py)

# 3 x 8 = 24 rows: chunks of 7 give 7, 7, 7 and 3 rows
TINY = GPT2Config(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=16,
                  padded_vocab_size=40, recompute="blocks")  # fmt: skip


def tokens(seed: int, shape: tuple[int, ...], vocab: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, shape)


def gpt2(config: GPT2Config, **options) -> GPT2:
    config = dataclasses.replace(config, **options)
    return GPT2(config, params=init_params(config, 3), ctx=G.Context("cpu", threads=2))


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_row_chunks_cover_the_rows_in_order() -> None:
    assert row_chunks(24, 7) == [(0, 7), (7, 7), (14, 7), (21, 3)]
    assert row_chunks(24, 24) == row_chunks(24, 100) == [(0, 24)]
    with pytest.raises(ValueError, match="chunk_rows must be >= 1"):
        row_chunks(24, 0)


def test_chunked_loss_and_gradients_match_the_reference() -> None:
    model = gpt2(TINY, loss_chunk_rows=7)
    idx, targets = tokens(1, (3, 8), 37), tokens(2, (3, 8), 37)
    step = model.graph(3, 8, "train")
    assert len(step.head_graphs) == 4
    loss, grads = model.loss_and_grads(idx, targets)
    params = model.state_dict()
    want_loss, want = ref.loss_and_grads(params, idx, targets, model.config)
    assert abs(loss - want_loss) <= 1e-5 * want_loss
    for name, w in want.items():
        assert relative_error(grads[name], w) <= GRAD_REL, name
    assert abs(model.loss(idx, targets) - want_loss) <= 1e-5 * want_loss  # the validation graph


@pytest.mark.parametrize(
    "options", [dict(), dict(dropout=0.2), dict(matmul_dtype="bf16"), dict(recompute="none")]
)
def test_chunks_against_one_piece(options: dict) -> None:
    """recompute='none' chunks only the validation graph (its train graph is one piece)."""
    idx, targets = tokens(4, (3, 8), 37), tokens(5, (3, 8), 37)
    results = {}
    for chunk in (0, 24, 7, 1):
        model = gpt2(TINY, loss_chunk_rows=chunk, **options)
        loss, grads = model.loss_and_grads(idx, targets)
        results[chunk] = loss, grads, model.loss(idx, targets)
    whole_loss, whole, whole_val = results[0]
    assert results[24][0] == whole_loss and results[24][2] == whole_val  # one chunk
    for name, value in whole.items():
        np.testing.assert_array_equal(results[24][1][name], value, err_msg=name)
    for chunk in (7, 1):
        loss, grads, val = results[chunk]
        assert abs(loss - whole_loss) <= LOSS_REL * whole_loss
        assert abs(val - whole_val) <= LOSS_REL * whole_val
        for name, value in whole.items():
            assert np.abs(value).max() > 0, name
            assert relative_error(grads[name], value) <= CHUNK_REL, f"{chunk}: {name}"


def test_llama_chunks_against_one_piece() -> None:
    config = LlamaConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_kv_head=2,
                         n_embd=32, d_ff=64, recompute="blocks", loss_chunk_rows=0)  # fmt: skip
    whole = Llama(config, ctx=G.Context(threads=2), seed=1)
    chunked = Llama(
        dataclasses.replace(config, loss_chunk_rows=5),
        params=whole.state_dict(),
        ctx=G.Context(threads=2),
    )
    idx, targets = tokens(6, (2, 16), 50), tokens(7, (2, 16), 50)
    want_loss, want = whole.loss_and_grads(idx, targets)
    loss, got = chunked.loss_and_grads(idx, targets)
    assert len(chunked.graph(2, 16, "train").head_graphs) == 7  # 32 rows by 5
    assert abs(loss - want_loss) <= LOSS_REL * want_loss
    for name, w in want.items():
        assert relative_error(got[name], w) <= CHUNK_REL, name
    val = chunked.loss(idx, targets)
    assert abs(val - whole.loss(idx, targets)) <= LOSS_REL * val


@pytest.mark.parametrize("mode", ["train", "loss"])
def test_chunked_graphs_hold_one_chunk_of_logits(mode: str) -> None:
    """A head of 2048 rows over 4096 columns: 33.6 MB of logits in one piece. In chunks of
    256 rows (4.2 MB each) the arena of the recomputing step, and the validation graph's
    buffers, stay below half of that (measured 9.4 and 4.8 MB); in one piece they exceed it
    (34.6 MB both): ggml's allocator frees each chunk's logits before the next."""
    config = GPT2Config(vocab_size=4096, block_size=256, n_layer=2, n_head=2, n_embd=64,
                        recompute="blocks")  # fmt: skip
    logits_bytes = 4 * 8 * 256 * 4096
    idx = tokens(8, (8, 256), 4096)
    buffers = {}
    for chunk in (0, 256):
        model = gpt2(config, loss_chunk_rows=chunk)
        step = model.graph(8, 256, mode)
        if mode == "train":
            step.run(idx, idx)
            buffers[chunk] = max(g.compute_buffer_bytes for g in step._graphs)
        else:
            assert isinstance(step.head, ChunkedLossHead) == (chunk > 0)
            step.run(idx, idx)
            buffers[chunk] = step.graph.compute_buffer_bytes
    assert buffers[0] >= logits_bytes
    assert buffers[256] <= logits_bytes / 2, buffers
