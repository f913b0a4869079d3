"""LoRA adapter files (pyggml_train/io/peft.py, lora_gguf.py, lora.py) against PEFT itself:
random bases built by transformers (Llama with GQA, Qwen2, GPT-2), random nonzero
adapters attached and saved by PEFT (helpers/lora.py).

- a PEFT adapter reads into LoraWeights holding PEFT's tensors;
- our PEFT export of it loads with ``PeftModel.from_pretrained``, logits within 1e-5 of
  PEFT's own file (measured 0: the same float32 tensors);
- base + adapter merged by us, run by our model, give PEFT's logits within 1e-4, and the
  merged weights equal PEFT's ``merge_and_unload``;
- a GGUF adapter holds what llama.cpp's loader expects (keys, names, ne, Q/K row order)
  and reads back bit-exact;
- adapters that do not fit their base, foreign variants and wrong files get clear errors.
llama.cpp running the GGUF adapter: test_lora_llama_cpp.py.
"""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
from helpers.lora import ALPHA, RANK, TARGETS, logits, write_lora_case

from pyggml_train import cli
from pyggml_train import ggml as G
from pyggml_train.adapters import LoraConfig, LoraWeights, format_lora
from pyggml_train.checkpoint import Checkpoint, save_checkpoint
from pyggml_train.config import LlamaConfig, TrainConfig
from pyggml_train.io import export_adapter, export_model, read_model_file
from pyggml_train.io.gguf_llama import pair_rows
from pyggml_train.io.lora import adaptable_weights, merge_lora
from pyggml_train.io.lora_gguf import load_gguf_lora, save_gguf_lora
from pyggml_train.io.peft import CONFIG_FILE, TENSOR_FILE
from pyggml_train.models import adapter_config, from_config, load_sampler, read_adapter

PEFT_ATOL = 1e-5  # our PEFT file vs PEFT's own, through PEFT
MERGED_ATOL = 1e-4  # our model on merged weights vs PEFT (measured 3.0e-5, 1.3e-5, 3.3e-6)


@pytest.fixture(scope="module", params=sorted(TARGETS))
def case(request, tmp_path_factory):
    return write_lora_case(tmp_path_factory.mktemp(request.param), request.param, n_ids=24)


@pytest.fixture(scope="module")
def llama_case(tmp_path_factory):
    return write_lora_case(tmp_path_factory.mktemp("llama"), "llama", n_ids=4)


@pytest.fixture(scope="module")
def lora(case):
    return read_adapter(case.peft_dir, case.base.config)


def peft_tensors(case) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(case.peft_dir / TENSOR_FILE)


def test_peft_adapter_reads_as_peft_saved_it(case, lora):
    saved = peft_tensors(case)
    assert lora.config.rank == RANK and lora.config.alpha == ALPHA
    assert lora.config.targets == tuple(sorted(TARGETS[case.name][0]))
    assert 2 * len(lora.a) == len(saved)
    for name in lora.a:
        module = "base_model.model." + name.removesuffix(".weight")
        assert np.array_equal(lora.a[name], saved[module + ".lora_A.weight"]), name
        assert np.array_equal(lora.b[name], saved[module + ".lora_B.weight"]), name
    if case.name == "qwen2":  # PEFT adapted layer 1 only
        assert all(".layers.1." in name for name in lora.a)


def test_our_peft_export_loads_in_peft_with_its_logits(case, lora, tmp_path):
    out = export_adapter(tmp_path / "adapter", "peft", lora, case.base.config)
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_FILE, TENSOR_FILE]
    want = logits(case.peft_model(), case.ids)
    got = logits(case.peft_model(out), case.ids)
    assert np.abs(got - want).max() <= PEFT_ATOL
    assert np.abs(got - logits(case.base_model(), case.ids)).max() > 0.1  # the adapter acts
    targets = json.loads((out / CONFIG_FILE).read_text())["target_modules"]
    if case.name == "qwen2":  # layer 1 only: each module in full (a short name matches all)
        assert targets == sorted(n.removesuffix(".weight") for n in lora.a)
    else:
        assert targets == sorted(TARGETS[case.name][0])
    back = read_adapter(out, case.base.config)
    assert back.config.targets == tuple(targets)
    for name in lora.a:
        assert np.array_equal(back.a[name], lora.a[name])
        assert np.array_equal(back.b[name], lora.b[name])


def test_merged_weights_run_by_our_model_give_peft_logits(case, lora):
    merged = merge_lora(case.base.params, lora, case.base.config)
    model = from_config(case.base.config, merged, G.Context(threads=2))
    want = logits(case.peft_model(), case.ids)
    err = np.abs(model.forward(case.ids) - want).max()
    print(f"{case.name}: logit scale {np.abs(want).max():.1f}, max |ours - PEFT| {err:.1e}")
    assert err <= MERGED_ATOL
    # and the weights are PEFT's merge_and_unload (HF layouts, GPT-2's Conv1D too)
    theirs = {k: v.numpy() for k, v in case.peft_model().merge_and_unload().state_dict().items()}
    for name in lora.a:
        assert np.abs(merged[name] - theirs[name]).max() <= 1e-6, name
    untouched = next(n for n in case.base.params if n not in lora.a)
    assert merged[untouched] is case.base.params[untouched]


def test_our_lora_model_with_a_peft_adapter_gives_peft_logits(case):
    """``sample --lora-from`` (models.load_sampler): the base, a LoRA model whose targets
    select exactly the file's weights (qwen2: layer 1 only), the adapter loaded into it.
    (The GPT-2 base directory carries no tokenizer to sample with: built the same way.)"""
    config = case.base.config
    lora = read_adapter(case.peft_dir, config)
    if case.name == "gpt2":
        ctx = G.Context(threads=2)
        model = from_config(config, case.base.params, ctx, lora=adapter_config(lora, config))
        model.load_lora(lora)
    else:
        model = load_sampler(case.base_dir, threads=2, lora_from=case.peft_dir).model
    assert set(model.adapters) == set(lora.a)
    err = np.abs(model.forward(case.ids) - logits(case.peft_model(), case.ids)).max()
    assert err <= MERGED_ATOL


def test_gguf_adapter_is_what_llama_cpp_loads(case, lora, tmp_path):
    """general.type adapter, adapter.type lora, alpha, the base's architecture; tensors
    <base tensor>.lora_a with ne {in, rank} and .lora_b with ne {rank, out}, named as our
    base export names the weight; a llama q_proj/k_proj B in the base export's row order."""
    config = case.base.config
    path = save_gguf_lora(tmp_path / "adapter.gguf", lora, config)
    base = export_model(
        tmp_path / "base.gguf", "gguf", case.base.params, config, case.base.tokenizer
    )
    reader, base_reader = gguf.GGUFReader(path), gguf.GGUFReader(base)

    def field(r, key):
        return r.get_field(key).contents()

    assert field(reader, gguf.Keys.General.TYPE) == "adapter"
    assert field(reader, gguf.Keys.Adapter.TYPE) == "lora"
    assert field(reader, gguf.Keys.Adapter.LORA_ALPHA) == ALPHA
    arch = gguf.Keys.General.ARCHITECTURE
    assert field(reader, arch) == field(base_reader, arch)
    base_ne = {t.name: [int(d) for d in t.shape] for t in base_reader.tensors}
    stored = {t.name: t for t in reader.tensors}
    assert len(stored) == 2 * len(lora.a)
    for name, t in stored.items():
        target, half = name.rsplit(".", 1)
        n_in, n_out = base_ne[target]  # the base weight's ne
        assert [int(d) for d in t.shape] == ([n_in, RANK] if half == "lora_a" else [RANK, n_out])
    if isinstance(config, LlamaConfig) and config.model_type == "llama":
        b = lora.b["model.layers.0.self_attn.k_proj.weight"]
        stored_b = stored["blk.0.attn_k.weight.lora_b"].data
        assert np.array_equal(stored_b, pair_rows(b, config.n_kv_head))
        assert not np.array_equal(stored_b, b)


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_gguf_adapter_round_trip(case, lora, tmp_path, dtype):
    path = save_gguf_lora(tmp_path / "adapter.gguf", lora, case.base.config, dtype)
    back = read_adapter(path, case.base.config)
    assert back.config == lora.config
    assert back.a.keys() == lora.a.keys()
    for name in lora.a:
        if dtype == "f32":
            assert np.array_equal(back.a[name], lora.a[name])
            assert np.array_equal(back.b[name], lora.b[name])
        else:
            assert np.array_equal(back.a[name], lora.a[name].astype(np.float16))
            assert np.array_equal(back.b[name], lora.b[name].astype(np.float16))


# ---- bad input ----------------------------------------------------------------------------


def small_lora(config, names, rank=2) -> LoraWeights:
    weights = adaptable_weights(config)
    rng = np.random.default_rng(0)
    a, b = {}, {}
    for name in names:
        n_in, n_out = weights[name].in_features, weights[name].out_features
        a[name] = rng.normal(size=(rank, n_in)).astype(np.float32)
        b[name] = rng.normal(size=(n_out, rank)).astype(np.float32)
    return LoraWeights(LoraConfig(rank=rank, alpha=4.0), a, b)


def test_an_adapter_of_another_base_size_is_refused(case, lora, tmp_path):
    config = case.base.config
    other = type(config)(**{**vars(config), "n_embd": 2 * config.n_embd})
    path = save_gguf_lora(tmp_path / "adapter.gguf", lora, config)
    for source in (case.peft_dir, path):
        with pytest.raises(ValueError, match="base of another size"):
            read_adapter(source, other)
    with pytest.raises(ValueError, match="base of another size"):
        merge_lora(case.base.params, lora, other)


def test_names_the_base_lacks_are_refused(case, lora, tmp_path):
    config = case.base.config
    fewer = type(config)(**{**vars(config), "n_layer": 1})  # lora names layer 1
    with pytest.raises(ValueError, match="not matrix weights of the"):
        read_adapter(case.peft_dir, fewer)
    path = save_gguf_lora(tmp_path / "adapter.gguf", lora, config)
    with pytest.raises(ValueError, match=r"'blk\.1\..*made for another model"):
        read_adapter(path, fewer)
    embedding = next(n for n in case.base.params if "wte" in n or "embed_tokens" in n)
    rank, c = 2, case.base.params[embedding].shape[1]
    table = LoraWeights(
        LoraConfig(rank=rank), {embedding: np.ones((rank, c))}, {embedding: np.ones((c, rank))}
    )
    with pytest.raises(ValueError, match="not matrix weights"):
        save_gguf_lora(tmp_path / "x.gguf", table, config)
    assert not (tmp_path / "x.gguf").exists()


def test_wrong_architecture_and_wrong_files_are_refused(case, lora, tmp_path):
    config = case.base.config
    path = save_gguf_lora(tmp_path / "adapter.gguf", lora, config)
    if isinstance(config, LlamaConfig):
        other = LlamaConfig(
            **{**vars(config), "model_type": "qwen2" if config.model_type == "llama" else "llama"}
        )
        with pytest.raises(ValueError, match="adapter is for architecture"):
            load_gguf_lora(path, other)
    base = export_model(
        tmp_path / "base.gguf", "gguf", case.base.params, config, case.base.tokenizer
    )
    with pytest.raises(ValueError, match="general.type is None"):
        read_adapter(base, config)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match="not a readable GGUF file"):
        read_adapter(cut, config)
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        read_adapter(case.base_dir / "model.safetensors", config)
    with pytest.raises(ValueError, match="hf model file, not a LoRA adapter"):
        read_adapter(case.base_dir, config)


@pytest.mark.parametrize(
    "setting", [("use_dora", True), ("use_rslora", True), ("bias", "all"), ("peft_type", "IA3")]
)
def test_peft_variants_beyond_plain_lora_are_refused(llama_case, tmp_path, setting):
    case = llama_case
    out = tmp_path / "variant"
    out.mkdir()
    settings = json.loads((case.peft_dir / CONFIG_FILE).read_text())
    settings[setting[0]] = setting[1]
    (out / CONFIG_FILE).write_text(json.dumps(settings))
    (out / TENSOR_FILE).write_bytes((case.peft_dir / TENSOR_FILE).read_bytes())
    with pytest.raises(ValueError, match=setting[0]):
        read_adapter(out, case.base.config)
    (out / TENSOR_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=TENSOR_FILE):
        read_adapter(out, case.base.config)


def test_peft_file_with_a_base_weight_copy_is_refused_saying_how_to_save(llama_case, tmp_path):
    """PEFT's default for an adapter on lm_head also saves lm_head's base weight."""
    out = tmp_path / "with_copy"
    llama_case.peft_model().save_pretrained(out, save_embedding_layers=True)
    with pytest.raises(ValueError, match="save_embedding_layers=False"):
        read_adapter(out, llama_case.base.config)


# ---- the export command -------------------------------------------------------------------


def test_export_command_converts_and_merges_adapters(llama_case, tmp_path, capsys):
    """PEFT -> gguf-lora -> peft through ``pyggml-train export`` keeps every tensor;
    --merge-lora writes merge_lora's weights; missing or misplaced --adapter is refused."""
    case, base = llama_case, str(llama_case.base_dir)
    gguf_out, peft_out, merged = tmp_path / "a.gguf", tmp_path / "peft", tmp_path / "merged"

    def export(*args: str) -> int:
        return cli.main(["export", "--checkpoint", base, *args])

    assert (
        export("--adapter", str(case.peft_dir), "--format", "gguf-lora", "--out", str(gguf_out))
        == 0
    )
    assert export("--adapter", str(gguf_out), "--format", "peft", "--out", str(peft_out)) == 0
    assert "4-rank LoRA on 15 weights" in capsys.readouterr().out
    want = read_adapter(case.peft_dir, case.base.config)
    got = read_adapter(peft_out, case.base.config)
    assert got.config == want.config
    for name in want.a:
        assert np.array_equal(got.a[name], want.a[name]) and np.array_equal(
            got.b[name], want.b[name]
        )
    args = ("--adapter", str(peft_out), "--merge-lora", "--format", "hf", "--out", str(merged))
    assert export(*args) == 0
    written = read_model_file(merged).params
    for name, value in merge_lora(case.base.params, want, case.base.config).items():
        assert np.array_equal(written[name], value), name
    assert export("--format", "peft", "--out", str(tmp_path / "x")) == 2
    assert "needs a LoRA adapter: pass --adapter" in capsys.readouterr().err
    assert export("--adapter", str(peft_out), "--format", "gguf", "--out", str(tmp_path / "y")) == 2
    assert "--format gguf alone writes the base" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_export_command_on_a_lora_runs_checkpoint(llama_case, tmp_path, capsys):
    """A LoRA run's checkpoint holds base and adapter: --format gguf writes the base alone,
    --format peft its adapter, --merge-lora both merged."""
    case, config = llama_case, llama_case.base.config
    lora = read_adapter(case.peft_dir, config)
    model = from_config(
        config, case.base.params, G.Context(threads=2), lora=adapter_config(lora, config)
    )
    model.load_lora(lora)
    ckpt = tmp_path / "ckpt.npz"
    train_config = TrainConfig(block_size=64, lora=format_lora(model.lora))
    tok = case.base.tokenizer.to_dict()
    save_checkpoint(ckpt, Checkpoint(1, config, train_config, tok, model.state_dict()))

    def export(*args: str) -> int:
        return cli.main(["export", "--checkpoint", str(ckpt), *args])

    assert export("--format", "peft", "--out", str(tmp_path / "peft")) == 0
    back = read_adapter(tmp_path / "peft", config)
    for name in lora.a:
        assert np.array_equal(back.a[name], lora.a[name])
        assert np.array_equal(back.b[name], lora.b[name])
    assert read_adapter(ckpt, config).a.keys() == lora.a.keys()
    assert export("--format", "hf", "--out", str(tmp_path / "base")) == 0
    assert export("--merge-lora", "--format", "hf", "--out", str(tmp_path / "merged")) == 0
    base, merged = (read_model_file(tmp_path / d).params for d in ("base", "merged"))
    assert base.keys() == case.base.params.keys()
    want = merge_lora(case.base.params, lora, config)
    for name, value in case.base.params.items():
        assert np.array_equal(base[name], value), name
        assert np.array_equal(merged[name], want[name]), name
    plain = tmp_path / "plain.npz"
    save_checkpoint(plain, Checkpoint(1, config, TrainConfig(block_size=64), tok, case.base.params))
    assert cli.main(["export", "--checkpoint", str(plain), "--format", "peft", "--out", "x"]) == 2
    assert "needs a LoRA adapter" in capsys.readouterr().err
