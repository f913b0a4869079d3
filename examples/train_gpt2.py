"""Train a small character-level GPT-2 on tiny shakespeare, then sample from it.

    python examples/train_gpt2.py                 # char-tiny: 900 steps, ~2 min on 2 cores
    python examples/train_gpt2.py --max-steps 300 # a quick look
    python examples/train_gpt2.py --resume        # continue from out/checkpoint.npz

Takes the flags of ``pyggml-train train`` (see ``--help``). Without --data the text is
tiny shakespeare: found in --data-dir or $PYGGML_DATASETS (e.g. ../shared/data), or
downloaded once into the cache, checked against its recorded SHA-256; never another text.
"""

from __future__ import annotations

import argparse
import sys

from pyggml_train.cli import add_train_arguments, run_command, run_train


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_train_arguments(parser, preset="char-tiny")
    return run_command("train_gpt2.py", run_train, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
