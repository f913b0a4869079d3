"""Write a small random Llama (or Qwen2) as a Hugging Face directory, with a byte-level BPE
tokenizer.json trained on a text: a stand-in for a pretrained checkpoint where none can
be downloaded (docs/llama.md fine-tunes it with ``pyggml-train train --init-from``).

    python examples/random_hf_llama.py --text ../shared/data/tinyshakespeare.txt --out smol
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", required=True, help="text the tokenizer is trained on")
    ap.add_argument("--out", required=True, help="the HF directory to write")
    ap.add_argument("--family", choices=["llama", "qwen2"], default="llama")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    args = ap.parse_args()

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train([args.text], trainer)

    config_class = transformers.LlamaConfig if args.family == "llama" else transformers.Qwen2Config
    config = config_class(
        vocab_size=tok.get_vocab_size(),
        hidden_size=args.width,
        intermediate_size=args.width * 8 // 3 // 32 * 32,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    out = Path(args.out)
    model.save_pretrained(out)
    tok.save(str(out / "tokenizer.json"))
    print(f"wrote {out}: {args.family}, {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
