"""What a newcomer reads first: --help, the settings list, and the notes and errors a
flag's value gets (issue 21). In-process through cli.main, which the console script runs."""

import argparse
import re
import socket

import pytest
from helpers.env import REPO_ROOT

from pyggml_train.cli import build_parser, main
from pyggml_train.config import follow_given, load_preset

REPO = REPO_ROOT
SPEC = REPO / "examples" / "specs" / "small-gpt.json"


def help_of(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_gives_each_command_a_purpose_and_an_example(capsys):
    text = help_of(capsys=capsys)
    for command in ("train", "sample", "prepare", "export", "config", "studio"):
        assert re.search(rf"^  {command} +\w", text, re.M), f"{command} has no purpose line"
        assert f"pyggml-train {command} " in text, f"{command} has no example"
    assert "thin argparse layer" not in text


def test_sample_help_describes_every_flag(capsys):
    text = help_of("sample", capsys=capsys)
    for flag in ("--checkpoint", "--max-new-tokens", "--top-k", "--top-p", "--seed", "--device",
                 "--threads"):  # fmt: skip
        entry = re.search(rf"^  {flag}( [A-Z_]+)?\s+(\S.*)$", text, re.M)
        assert entry and len(entry.group(2)) > 10, f"{flag} is not described:\n{text}"


@pytest.mark.parametrize(
    ("command", "default"),
    [("sample", "(default: 200)"), ("sample", "(default: 0)"), ("prepare", "(default: 0.1)"),
     ("train", "(default: out)"), ("studio", "(default: 8000)"), ("export", "(default: f32)")],
)  # fmt: skip
def test_every_subcommand_shows_its_defaults(command, default, capsys):
    assert default in " ".join(help_of(command, capsys=capsys).split())


def test_set_help_lists_every_key_with_its_default_and_meaning(capsys):
    assert main(["train", "--set", "help"]) == 0
    listed = capsys.readouterr().out
    assert main(["config", "--preset", "char-tiny"]) == 0
    assert capsys.readouterr().out == listed
    assert re.search(r"^  min_lr +0\.0004 +floor of the cosine decay", listed, re.M)
    assert re.search(r"^  n_layer +4 +transformer blocks", listed, re.M)
    for line in listed.splitlines():
        if line.startswith("  "):
            assert len(line.split(None, 2)) == 3, f"a key without a meaning: {line!r}"


def test_lr_alone_takes_min_lr_along_and_says_so():
    _, base, _ = load_preset("char-tiny")  # lr 4e-3, min_lr 4e-4
    given = {"lr": "1e-5"}
    notes = follow_given(base, given)
    assert given["min_lr"] == pytest.approx(1e-6)
    assert len(notes) == 1 and "min_lr 1e-06" in notes[0] and "--set min_lr=" in notes[0]
    _, train, _ = load_preset("char-tiny", **given)
    assert (train.lr, train.min_lr) == (1e-5, pytest.approx(1e-6))


def test_a_given_min_lr_is_kept_and_a_contradiction_names_the_flag():
    _, base, _ = load_preset("char-tiny")
    given = {"lr": 1e-5, "min_lr": 0.0004}
    assert follow_given(base, given) == [] and given["min_lr"] == 0.0004
    with pytest.raises(ValueError, match=r"--set min_lr=X \(e\.g\. 1e-06"):
        load_preset("char-tiny", **given)


def test_a_short_run_keeps_the_warmup_fraction_and_says_so():
    _, base, _ = load_preset("char-tiny")  # 900 steps, warmup 100
    given = {"max_steps": "45"}
    (note,) = follow_given(base, given)
    assert given["warmup_steps"] == 5 and "warmup_steps 5" in note
    with pytest.raises(ValueError, match="--set warmup_steps=N"):
        load_preset("char-tiny", max_steps=45, warmup_steps=50)


@pytest.mark.parametrize(
    ("flag", "why"),
    [(["--preset", "bpe-small"], "the spec is the model"),
     (["--tokenizer", "gpt2"], "names the tokenizer")],
)  # fmt: skip
def test_a_flag_that_does_not_apply_to_a_spec_is_refused(flag, why, tmp_path, capsys):
    code = main(["train", "--model", str(SPEC), "--out-dir", str(tmp_path), *flag])
    err = capsys.readouterr().err
    assert code == 2 and f"{flag[0]} does not apply with --model" in err and why in err


def test_every_flag_of_every_command_has_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, f"pyggml-train {name} {action.option_strings[0]}: no help"


def test_a_second_studio_on_a_taken_port_says_so_before_announcing(tmp_path, capsys):
    pytest.importorskip("uvicorn", reason="the studio extra: pip install '.[studio]'")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["studio", "--port", str(port), "--data-dir", str(tmp_path)]
        assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "open http" not in out
    assert f"port {port} on 127.0.0.1 is taken" in err and f"--port {port + 1}" in err


@pytest.mark.parametrize(
    ("flag", "message"),
    [(["--max-new-tokens", "-3"], "--max-new-tokens must be >= 0, got -3"),
     (["--threads", "0"], "--threads must be >= 1, got 0")],
)  # fmt: skip
def test_sample_refuses_values_it_used_to_ignore(flag, message, capsys):
    """-3 tokens printed nothing and --threads 0 fell back to the default, both silently."""
    assert main(["sample", "--checkpoint", "unused.npz", *flag]) == 2
    assert capsys.readouterr().err.strip() == f"pyggml-train sample: error: {message}"
