"""The console script end to end, in subprocesses: prepare, train, resume, sample."""

import json
import re
import subprocess
import sys

import pytest
from helpers.cli import cli
from helpers.env import REPO_ROOT, child_env

pytestmark = pytest.mark.slow  # each test runs the console script in a subprocess

TEXT = REPO_ROOT / ".." / "shared" / "data" / "the-verdict.txt"
TINY = ["--set", "n_layer=1", "n_embd=32", "n_head=2", "eval_interval=5", "eval_steps=2",
        "sample_tokens=30", "--batch-size", "4", "--block-size", "32", "--threads", "2",
        "--no-progress"]  # fmt: skip


def test_train_resume_and_sample_end_to_end(tmp_path):
    out = tmp_path / "run"
    done = cli("train", "--data", str(TEXT), "--max-steps", "6", "--out-dir", str(out), *TINY)
    assert done.returncode == 0, done.stderr
    match = re.search(r"final val loss: (\d+\.\d+)", done.stdout)
    assert match and 0 < float(match.group(1)) < 10, done.stdout
    assert "--- sample ---" in done.stdout
    assert (out / "checkpoint.npz").is_file() and (out / "metrics.jsonl").is_file()

    more = cli("train", "--data", str(TEXT), "--max-steps", "8", "--out-dir", str(out), "--resume",
               *TINY)  # fmt: skip
    assert more.returncode == 0, more.stderr
    assert "resumed at step 6 of 8" in more.stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 8

    sample = cli("sample", "--checkpoint", str(out / "checkpoint.npz"), "--prompt", "I had",
                 "--max-new-tokens", "12", "--temperature", "0")  # fmt: skip
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("I had") and len(sample.stdout.rstrip("\n")) == 5 + 12


def test_prepare_then_train_on_the_prepared_directory(tmp_path):
    data = tmp_path / "data"
    prep = cli("prepare", "--data", str(TEXT), "--tokenizer", "char", "--out-dir", str(data))
    assert prep.returncode == 0, prep.stderr
    assert (data / "train.bin").is_file() and (data / "tokenizer.json").is_file()
    done = cli("train", "--data", str(data), "--max-steps", "2", "--out-dir", str(tmp_path / "o"),
               *TINY)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "prepared tokens" in done.stdout and "final val loss" in done.stdout


def test_bad_preset_is_a_clear_error(tmp_path):
    done = cli("train", "--preset", "no-such-preset", "--out-dir", str(tmp_path))
    assert done.returncode == 2
    assert "unknown preset" in done.stderr and "char-tiny" in done.stderr


def test_example_reports_a_bad_value_in_one_line(tmp_path):
    """examples/train_gpt2.py goes through the CLI's error reporting: no traceback."""
    env = child_env()
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "train_gpt2.py"), "--set", "sample_tokens=0",
         "--out-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    expected = "train_gpt2.py: error: TrainConfig.sample_tokens must be > 0, got 0"
    assert done.stderr.strip() == expected


def test_resume_applies_what_it_may_change_and_refuses_the_rest(tmp_path):
    """A resume takes a new schedule and length (and says so), refuses a new batch by name,
    and a run already at its last step says there is nothing to train."""
    out = tmp_path / "run"
    done = cli("train", "--data", str(TEXT), "--max-steps", "3", "--out-dir", str(out), *TINY)
    assert done.returncode == 0, done.stderr
    again = ["train", "--data", str(TEXT), "--out-dir", str(out), "--resume", *TINY]
    refused = cli(*again, "--max-steps", "5", "--batch-size", "8")
    assert refused.returncode == 2
    assert "a resumed run can't change batch_size (4 -> 8)" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    more = cli(*again, "--max-steps", "5", "--lr", "1e-3", "--set", "min_lr=1e-4")
    assert more.returncode == 0, more.stderr
    assert "resume changes lr: " in more.stdout and "-> 0.001" in more.stdout, more.stdout
    assert "resume changes max_steps: 3 -> 5" in more.stdout
    resumed = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5]
    assert all(r["lr"] <= 1e-3 for r in resumed[3:])  # the new peak
    idle = cli(*again)
    assert idle.returncode == 0, idle.stderr
    assert "nothing to train: the run is at step 5 and max_steps is 5" in idle.stdout


def test_example_sample_and_export_agree_on_the_run_directory(tmp_path):
    """One rule for where a run lives: the example trains into ./out, and sample and
    export find its checkpoint there with no flags; sample reads every format export
    writes (GGUF, HF) and a run directory."""
    env = child_env()
    example = [sys.executable, str(REPO_ROOT / "examples" / "train_gpt2.py"), "--data", str(TEXT),
               "--max-steps", "2", *TINY]  # fmt: skip
    done = subprocess.run(
        example, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "checkpoint.npz").is_file()

    def here(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "pyggml_train.cli", *args]
        return subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path
        )

    greedy = ["--prompt", "I had", "--max-new-tokens", "8", "--temperature", "0", "--threads", "1"]
    base = here("sample", *greedy)
    assert base.returncode == 0, base.stderr
    assert base.stdout.startswith("I had")
    assert here("sample", "--checkpoint", "out", *greedy).stdout == base.stdout
    for fmt, name in (("gguf", "m.gguf"), ("hf", "hf")):
        exported = here("export", "--format", fmt, "--out", name)
        assert exported.returncode == 0, exported.stderr
        again = here("sample", "--checkpoint", name, *greedy)
        assert again.returncode == 0, again.stderr
        assert again.stdout == base.stdout, fmt
        assert "allow_pickle" not in again.stderr
