"""Model/train configs: presets, typed overrides, validation, JSON round trip."""

import json

import pytest

from pyggml_train.config import (
    GPT2Config,
    TrainConfig,
    from_json,
    list_presets,
    load_preset,
    to_json,
)


def test_list_presets_has_the_six_bundled() -> None:
    assert set(list_presets()) >= {
        "gpt2",
        "gpt2-medium",
        "gpt2-large",
        "gpt2-xl",
        "char-tiny",
        "bpe-small",
    }


@pytest.mark.parametrize(
    ("name", "n_layer", "n_embd", "n_head"),
    [
        ("gpt2", 12, 768, 12),
        ("gpt2-medium", 24, 1024, 16),
        ("gpt2-large", 36, 1280, 20),
        ("gpt2-xl", 48, 1600, 25),
    ],
)
def test_gpt2_family_sizes(name: str, n_layer: int, n_embd: int, n_head: int) -> None:
    model, train, tok = load_preset(name)
    assert (model.n_layer, model.n_embd, model.n_head) == (n_layer, n_embd, n_head)
    assert (model.vocab_size, model.block_size, tok) == (50257, 1024, "gpt2")
    assert train.block_size <= model.block_size


def test_char_tiny_takes_vocab_from_tokenizer() -> None:
    model, train, tok = load_preset("char-tiny")
    assert tok == "char" and model.vocab_size is None
    with pytest.raises(ValueError, match="with_vocab_size"):
        model.require_vocab_size()
    assert model.with_vocab_size(65).require_vocab_size() == 65


def test_overrides_are_typed_and_routed() -> None:
    model, train, _ = load_preset(
        "bpe-small", n_layer="2", lr="3e-4", block_size=64, grad_clip="none", tokenizer="char"
    )
    assert model.n_layer == 2 and isinstance(model.n_layer, int)
    assert train.lr == 3e-4 and train.grad_clip is None
    assert model.block_size == 64 and train.block_size == 64  # bare name hits both sections
    model, train, tok = load_preset("bpe-small", **{"train.block_size": 32})
    assert (model.block_size, train.block_size) == (128, 32)
    _, train, _ = load_preset("bpe-small", max_steps=2.0e3)
    assert train.max_steps == 2000 and isinstance(train.max_steps, int)


def test_unknown_override_names_valid_fields() -> None:
    with pytest.raises(ValueError, match="n_layers.*valid model fields:.*n_layer"):
        load_preset("gpt2", n_layers=3)
    with pytest.raises(ValueError, match="valid fields:.*n_embd"):
        load_preset("gpt2", **{"model.lr": 1.0})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_layer": "two"}, "GPT2Config.n_layer expects int"),
        ({"n_layer": 2.5}, "GPT2Config.n_layer expects int"),
        ({"n_layer": True}, "GPT2Config.n_layer expects int"),
        ({"n_layer": None}, "can't be None"),
        ({"n_embd": 100}, "divisible by n_head"),
        ({"n_head": 0}, "n_head must be > 0"),
        ({"train.block_size": 2048}, "exceeds the model context"),
        ({"tokens_per_step": 1000}, "multiple of batch_size"),
        ({"tokenizer": "bytes"}, "tokenizer must be one of"),
        ({"min_lr": 1.0}, "min_lr <= lr"),
    ],
)
def test_invalid_values_are_rejected_with_a_reason(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_preset("gpt2", **overrides)


def test_unknown_preset_lists_available() -> None:
    with pytest.raises(ValueError, match="available: .*char-tiny"):
        load_preset("gpt5")


def test_grad_accum_steps() -> None:
    train = TrainConfig(batch_size=4, block_size=64, tokens_per_step=4 * 64 * 8)
    assert train.grad_accum_steps == 8
    assert TrainConfig().grad_accum_steps == 1


def test_json_round_trip_and_preset_file_path(tmp_path) -> None:
    model, train, tok = load_preset("char-tiny", vocab_size=65, seed=7)
    text = to_json(model, train, tok)
    assert from_json(text) == (model, train, tok)
    path = tmp_path / "mine.json"
    path.write_text(text)
    assert load_preset(path) == (model, train, tok)
    assert json.loads(text)["model"]["vocab_size"] == 65


def test_head_dim_and_padding_check() -> None:
    assert GPT2Config().head_dim == 64
    with pytest.raises(ValueError, match="padded_vocab_size"):
        GPT2Config(vocab_size=100, padded_vocab_size=64)


def test_graph_options_are_fields_reached_by_overrides_and_json() -> None:
    # the strings are what `--set key=value` passes through
    model, train, tok = load_preset(
        "char-tiny", loss_kind="dense", attention="unfused", matmul_dtype="bf16"
    )
    assert (model.loss_kind, model.attention, model.matmul_dtype) == ("dense", "unfused", "bf16")
    assert from_json(to_json(model, train, tok))[0] == model  # what a checkpoint stores
    defaults = GPT2Config()
    assert (defaults.loss_kind, defaults.attention, defaults.matmul_dtype) == (
        "sparse",
        "auto",
        "f32",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("loss_kind", "focal"), ("attention", "flash"), ("matmul_dtype", "f16")],
)
def test_graph_option_choices_are_checked(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"GPT2Config.{field} must be one of .*got '{value}'"):
        load_preset("char-tiny", **{field: value})


def test_data_mode_choice_is_checked() -> None:
    with pytest.raises(ValueError, match="TrainConfig.data_mode must be one of"):
        TrainConfig(data_mode="shuffled")


def test_recompute_is_a_field_and_none_is_its_string() -> None:
    model, train, tok = load_preset("gpt2", recompute="blocks")
    assert model.recompute == "blocks"
    model, _, _ = load_preset("gpt2", recompute="none")  # a str field keeps "none"
    assert model.recompute == "none"
    assert from_json(to_json(model, train, tok))[0].recompute == "none"
    with pytest.raises(ValueError, match="recompute must be one of"):
        load_preset("gpt2", recompute="layers")
