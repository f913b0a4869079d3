"""Train a small character-level GPT-2 on tiny shakespeare, then sample from it.

    python examples/train_gpt2.py                 # char-tiny: 900 steps, ~2 min on 2 cores
    python examples/train_gpt2.py --max-steps 300 # a quick look
    python examples/train_gpt2.py --resume        # continue from out/checkpoint.npz

Takes the flags of ``pyggml-train train`` (see ``--help``). Without --data the text is
tiny shakespeare: found in --data-dir or $PYGGML_DATASETS (this script adds the folder
``shared/data`` beside the checkout when there is one, so the quick start runs offline), or
downloaded once into the cache, checked against its recorded SHA-256; never another text.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pyggml_train.cli import add_train_arguments, run_command, run_train
from pyggml_train.datasets import DATASETS_ENV

# the data folder shared beside a checkout (../shared/data from its root), when present
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_train_arguments(parser, preset="char-tiny")
    if SHARED_DATA.is_dir() and DATASETS_ENV not in os.environ:
        os.environ[DATASETS_ENV] = str(SHARED_DATA)
    return run_command("train_gpt2.py", run_train, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
