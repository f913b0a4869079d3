"""A small training setup on the-verdict.txt (shared data): char data and a 1-layer model
that train in seconds. Shared by the training, reliability and resource tests and
scripts/rss_drift.py."""

from helpers.env import SHARED
from pyggml_train.config import GPT2Config, TrainConfig
from pyggml_train.models import new_model
from pyggml_train.tokenizer import CharTokenizer
from pyggml_train.train import TrainData, Trainer

TEXT = SHARED / "data" / "the-verdict.txt"


def small_data() -> TrainData:
    text = TEXT.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    split = int(len(ids) * 0.9)
    return TrainData(ids[:split], ids[split:], tok, "the-verdict")


def configs(**train_kw) -> tuple[GPT2Config, TrainConfig]:
    model = GPT2Config(vocab_size=None, block_size=32, n_layer=1, n_head=2, n_embd=32)
    kw = dict(
        batch_size=4,
        block_size=32,
        max_steps=6,
        warmup_steps=2,
        lr=3e-3,
        min_lr=3e-4,
        tokens_per_step=256,
        eval_steps=2,
        threads=2,
    )
    return model, TrainConfig(**{**kw, **train_kw})


def gpt2_trainer(model_cfg: GPT2Config, train_cfg: TrainConfig, data: TrainData) -> Trainer:
    """A Trainer of a fresh GPT-2 of ``model_cfg``, built as a run builds it (on the run's
    device and threads, from its seed, the vocabulary the data's tokenizer's)."""
    return Trainer(new_model(model_cfg, train_cfg, data.tokenizer.vocab_size), train_cfg, data)
