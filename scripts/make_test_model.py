#!/usr/bin/env python3
"""Make a small randomly initialised Llama model and a byte-level BPE tokenizer
(trained here on caplab's own data files, with a chat template) that vLLM can
serve offline. Its text is gibberish; its shapes, KV cache and timing are real.

The vocabulary holds ASCII only: a random model then never emits a lone byte of a
multi-byte character, which vLLM would stream as an empty chunk (so every generated
token but the special ones carries text, and client and server agree on TTFT).

usage: make_test_model.py OUT_DIR [--hidden N --layers N --heads N --kv-heads N --intermediate N]
"""
import argparse
import json
import os
import pathlib
import random

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DATA = pathlib.Path(__file__).resolve().parent.parent / "data"


def training_text(seed: int):
    """caplab's documents and prompts, plus shuffled recombinations for enough BPE merges."""
    words = []
    for name in ("docs_sample.txt", "chat_prompts.txt", "summarize_prompt.txt"):
        words += (DATA / name).read_text().split()
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    words += ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(5000)]
    for _ in range(6000):
        yield " ".join(rng.choice(words) for _ in range(rng.randint(4, 16)))


def ascii_alphabet():
    """The byte-level (GPT-2) characters of the 128 ASCII bytes."""
    printable = list(range(ord("!"), ord("~") + 1))
    others = [b for b in range(256) if b not in printable and not (161 <= b <= 172 or 174 <= b <= 255)]
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + i) for i, b in enumerate(others)})
    return [mapping[b] for b in range(128)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)

    bpe = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        training_text(a.seed),
        trainer=trainers.BpeTrainer(vocab_size=a.vocab, min_frequency=1, special_tokens=SPECIALS,
                                    initial_alphabet=ascii_alphabet(), limit_alphabet=128, show_progress=False),
    )
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>", additional_special_tokens=["<|im_start|>", "<|im_end|>"],
                                  model_max_length=4096, clean_up_tokenization_spaces=False)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(a.out)

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=a.hidden, intermediate_size=a.intermediate,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                      head_dim=a.hidden // a.heads, max_position_embeddings=4096, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(a.out)

    for name, extra in (("config.json", {"torch_dtype": "bfloat16", "dtype": "bfloat16"}),
                        ("tokenizer_config.json", {"chat_template": CHAT_TEMPLATE, "tokenizer_class": "PreTrainedTokenizerFast"})):
        path = os.path.join(a.out, name)
        with open(path) as f:
            c = json.load(f)
        c.update(extra)
        with open(path, "w") as f:
            json.dump(c, f, indent=2)
    print(json.dumps({"out": a.out, "vocab": len(tok), "params": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
