#!/usr/bin/env python3
"""Make randomly initialised models with real architectures' exact shapes, plus a local tokenizer.

No hub access: the tokenizer is a byte-level BPE trained on local text whose vocabulary is then
filled up to the architecture's size with plain (unmergeable) byte-level tokens, so the LM head
and the sampler cost what they cost in the real model. Outputs are gibberish; compute and memory
traffic are real.

usage: make_model.py OUT_DIR SHAPE [OUT_DIR SHAPE ...]      (SHAPE: one of SHAPES below)
       make_model.py --tokenizer-only OUT_DIR SHAPE         (no torch needed: for rehearsals)

Differences from bench/gpu/make_model.py (the transformers-serve anchor's): more shapes (the
values of each model's config.json on the Hugging Face hub), several models in one process, the
weights drawn on the GPU and written without a second copy, and the vocabulary filled with plain
BPE tokens instead of ~148,000 "added tokens". A real Qwen2.5 tokenizer has 151,643 BPE tokens and
22 added ones; hundreds of thousands of added tokens made every tokenizer load slow (they are
matched by a separate trie) and are not what vLLM sees with the real model.
"""
import json
import os
import sys
import time

SHAPES = {
    # Qwen/Qwen2.5-0.5B-Instruct config.json
    "qwen2.5-0.5b": dict(arch="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1000000.0,
                         rms_norm_eps=1e-6),
    # Qwen/Qwen2.5-1.5B-Instruct config.json
    "qwen2.5-1.5b": dict(arch="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                         max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1000000.0,
                         rms_norm_eps=1e-6),
    # Qwen/Qwen2.5-7B-Instruct config.json
    "qwen2.5-7b": dict(arch="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                       max_position_embeddings=32768, tie_word_embeddings=False, rope_theta=1000000.0,
                       rms_norm_eps=1e-6),
    # meta-llama/Llama-3.1-8B-Instruct config.json (rope_scaling llama3 as published)
    "llama-3.1-8b": dict(arch="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                         max_position_embeddings=131072, tie_word_embeddings=False, rope_theta=500000.0,
                         rms_norm_eps=1e-5,
                         rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
    "tiny": dict(arch="qwen2", hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=8192,
                 max_position_embeddings=4096, tie_word_embeddings=True, rope_theta=1000000.0,
                 rms_norm_eps=1e-6),
}

CORPUS = """Large language models are served by inference engines that batch requests continuously.
The key value cache holds attention state for every running sequence; when it fills, requests wait
or are preempted. Throughput grows with concurrency until memory bandwidth or cache capacity binds.
Latency to first token depends on prefill work, and time per output token on decode steps.
Summarize the following technical document in five bullet points. Be concise and focus on key insights.
Finance, Kubernetes, GPUs, TPUs, quantization, speculative decoding, cost per token, right sizing.
""" * 20

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# caplab's synthetic prompts (the `input_tokens` axis, proxy/src/workload/synthetic.rs) are words
# that a real BPE tokenizer reads as one token each (a leading space and three letters); the 4,000
# tokens learnt from CORPUS make only 6 of these 64 one token, and caplab needs 8 or more to make
# prompts of an exact length. With VX_WORD_TOKENS=1 in the environment (the input-length anchors)
# the corpus gets one line of these words, so each becomes one token, as in Qwen's and Llama's
# tokenizers. Off by default: the first anchors' tokenizers are unchanged.
CAPLAB_WORDS = ("the and for are but not you all any can had her was one our out day get has him his how man new "
                "now old see two way who did its let put say she too use may run set end few big low top per own "
                "far off yet ask try add key job law lot map net act age air art")


def make_tokenizer(out, vocab_size):
    """Byte-level BPE trained on CORPUS (4,000 tokens), its vocabulary filled with plain tokens
    ("Ġq0", "Ġq1", … in the byte-level alphabet, never produced by encoding) up to vocab_size,
    the three specials as the only added tokens. Returns the saved fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, AddedToken
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4000, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = CORPUS + ((" " + CAPLAB_WORDS + "\n") * 20 if os.environ.get("VX_WORD_TOKENS") == "1" else "")
    tok.train_from_iterator([corpus], trainer)
    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["model"]["merges"]]
    n = len(vocab)
    i = 0
    while n < vocab_size:
        t = f"\u0120q{i}"          # "Ġq<i>": decodes to " q<i>"
        i += 1
        if t not in vocab:
            vocab[t] = n
            n += 1
    full = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    full.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    full.decoder = decoders.ByteLevel()
    full.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    assert full.get_vocab_size() == vocab_size, (full.get_vocab_size(), vocab_size)
    fast = PreTrainedTokenizerFast(tokenizer_object=full, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", bos_token=None)
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    fast.save_pretrained(out)
    return fast


def make_model(out, name):
    t0 = time.time()
    shape = dict(SHAPES[name])
    arch = shape.pop("arch")
    os.makedirs(out, exist_ok=True)
    fast = make_tokenizer(out, shape["vocab_size"])
    import torch
    if arch == "llama":
        from transformers import LlamaConfig as Config, LlamaForCausalLM as Model
    else:
        from transformers import Qwen2Config as Config, Qwen2ForCausalLM as Model
    cfg = Config(**shape, torch_dtype="bfloat16",
                 eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"), bos_token_id=None,
                 pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"))
    torch.manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(dev):
        model = Model(cfg).to(torch.bfloat16)   # fp32 draw then bf16: 45 GB on the GPU for an 8 B model
    t1 = time.time()
    model.save_pretrained(out, safe_serialization=True, max_shard_size="50GB")
    n = sum(p.numel() for p in model.parameters())
    del model
    if dev == "cuda":
        torch.cuda.empty_cache()
    with open(os.path.join(out, "config.json")) as f:
        c = json.load(f)
    print(json.dumps({"out": out, "shape": name, "params": n, "vocab": len(fast), "init_s": round(t1 - t0, 1), "save_s": round(time.time() - t1, 1),
                      "architectures": c.get("architectures"), "dtype": c.get("torch_dtype", c.get("dtype"))}),
          flush=True)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--tokenizer-only"]:
        out, name = args[1], args[2]
        os.makedirs(out, exist_ok=True)
        shape = dict(SHAPES[name])
        make_tokenizer(out, shape["vocab_size"])
        cfg = {k: v for k, v in shape.items() if k != "arch"}
        cfg["architectures"] = ["LlamaForCausalLM" if shape["arch"] == "llama" else "Qwen2ForCausalLM"]
        cfg["model_type"] = shape["arch"]
        cfg["transformers_version"] = "5.17.0"
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        print(json.dumps({"out": out, "shape": name, "tokenizer_only": True}))
        return
    if not args or len(args) % 2:
        sys.exit(__doc__)
    for out, name in zip(args[0::2], args[1::2]):
        if os.path.exists(os.path.join(out, "done")):
            print(json.dumps({"out": out, "shape": name, "exists": True}), flush=True)
            continue
        make_model(out, name)
        open(os.path.join(out, "done"), "w").close()


if __name__ == "__main__":
    main()
