"""Build an offline Hugging Face hub cache holding stand-ins for the tiny Hub models PEFT's tests load.

PEFT's tests call ``from_pretrained("peft-internal-testing/tiny-random-OPTForCausalLM")`` and the like. Nothing may
be downloaded here, so this script creates, for each id, a model of the architecture the name says, from a
transformers config with tiny sizes and random weights (``save_pretrained``, safetensors), plus a small word-level
tokenizer built with the ``tokenizers`` library and saved as a ``PreTrainedTokenizerFast`` with the special tokens
of that model family. Each lands in the standard hub cache layout
(``<cache>/models--org--name/{refs/main,snapshots/<rev>/}``), so that with ``HF_HUB_CACHE=<cache>`` and
``HF_HUB_OFFLINE=1`` the ordinary loading code of transformers, PEFT and minipeft finds them unchanged.

These are not the Hub's weights: any test that compares against numbers recorded from the real checkpoints would
differ (none of the selected prompt-learning cases does). The sizes follow the usual "tiny-random" test models
(hidden size 16-32, 2 layers, a few heads).

    python scripts/peft_suite/make_hub_cache.py _build/peft-suite/hub [--only ID ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

VERSION = "1"  # bump to rebuild every entry

# model id -> (family, transformers Auto class, config kwargs)
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
LLAMA_LIKE = dict(
    SMALL,
    num_key_value_heads=2,
    max_position_embeddings=512,
    vocab_size=1000,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    tie_word_embeddings=False,
)
BERT_LIKE = dict(
    SMALL,
    vocab_size=1000,
    max_position_embeddings=512,
    type_vocab_size=16,
    pad_token_id=0,
)

MODELS: dict[str, tuple[str, str, str, dict]] = {
    # decoders (tests/test_decoder_models.py)
    "peft-internal-testing/tiny-random-OPTForCausalLM": (
        "gpt2",
        "AutoModelForCausalLM",
        "opt",
        dict(
            vocab_size=1000,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=4,
            word_embed_proj_dim=16,
            max_position_embeddings=512,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        ),
    ),
    "peft-internal-testing/tiny-random-GPT2LMHeadModel": (
        "gpt2",
        "AutoModelForCausalLM",
        "gpt2",
        dict(vocab_size=1000, n_embd=32, n_layer=2, n_head=4, n_positions=512, bos_token_id=0, eos_token_id=0),
    ),
    "hf-internal-testing/tiny-random-gpt2": (
        "gpt2",
        "AutoModelForCausalLM",
        "gpt2",
        dict(vocab_size=1000, n_embd=32, n_layer=5, n_head=4, n_positions=512, bos_token_id=0, eos_token_id=0),
    ),
    "peft-internal-testing/tiny-random-GPTJForCausalLM": (
        "gpt2",
        "AutoModelForCausalLM",
        "gptj",
        dict(
            vocab_size=1000,
            n_embd=32,
            n_layer=2,
            n_head=4,
            rotary_dim=4,
            n_positions=512,
            bos_token_id=0,
            eos_token_id=0,
        ),
    ),
    "trl-internal-testing/tiny-random-LlamaForCausalLM": ("llama", "AutoModelForCausalLM", "llama", dict(LLAMA_LIKE)),
    "hf-internal-testing/tiny-random-MistralForCausalLM": (
        "llama",
        "AutoModelForCausalLM",
        "mistral",
        dict(LLAMA_LIKE, sliding_window=4096),
    ),
    "peft-internal-testing/tiny-dummy-qwen2": (
        "gpt2",
        "AutoModelForCausalLM",
        "qwen2",
        dict(LLAMA_LIKE, bos_token_id=0, eos_token_id=0, pad_token_id=None),
    ),
    "hf-internal-testing/tiny-random-Gemma3ForCausalLM": (
        "gemma",
        "AutoModelForCausalLM",
        "gemma3_text",
        dict(
            LLAMA_LIKE,
            head_dim=8,
            sliding_window=16,
            query_pre_attn_scalar=8,
            bos_token_id=2,
            eos_token_id=1,
            pad_token_id=0,
            tie_word_embeddings=True,
        ),
    ),
    # encoder-decoders (tests/test_encoder_decoder_models.py)
    "peft-internal-testing/tiny-random-T5ForConditionalGeneration-calibrated": (
        "t5",
        "AutoModelForSeq2SeqLM",
        "t5",
        dict(
            vocab_size=1000,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        ),
    ),
    "peft-internal-testing/tiny-random-BartForConditionalGeneration": (
        "bart",
        "AutoModelForSeq2SeqLM",
        "bart",
        dict(
            vocab_size=1000,
            d_model=16,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=4,
            decoder_ffn_dim=4,
            max_position_embeddings=512,
            bos_token_id=0,
            pad_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=2,
            forced_eos_token_id=2,
        ),
    ),
    # encoders (tests/test_feature_extraction_models.py, tests/test_seq_classifier.py)
    "peft-internal-testing/tiny-random-BertModel": ("bert", "AutoModel", "bert", dict(BERT_LIKE)),
    "peft-internal-testing/tiny-random-RobertaModel": (
        "bart",
        "AutoModel",
        "roberta",
        dict(BERT_LIKE, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2),
    ),
    "peft-internal-testing/tiny-random-DebertaModel": (
        "bert",
        "AutoModel",
        "deberta",
        dict(BERT_LIKE, type_vocab_size=0),
    ),
    "peft-internal-testing/tiny-random-DebertaV2Model": (
        "bert",
        "AutoModel",
        "deberta-v2",
        dict(BERT_LIKE, type_vocab_size=0),
    ),
    "peft-internal-testing/tiny-random-BertForSequenceClassification": (
        "bert",
        "AutoModelForSequenceClassification",
        "bert",
        dict(BERT_LIKE),
    ),
    "peft-internal-testing/tiny-random-RobertaForSequenceClassification": (
        "bart",
        "AutoModelForSequenceClassification",
        "roberta",
        dict(BERT_LIKE, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2),
    ),
    "trl-internal-testing/tiny-LlamaForSequenceClassification-3.2": (
        "llama",
        "AutoModelForSequenceClassification",
        "llama",
        dict(LLAMA_LIKE),
    ),
}

# tokenizer family -> special tokens (in id order, from 0) and the roles they play
SPECIALS = {
    "gpt2": (["<|endoftext|>"], dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")),
    "llama": (["<unk>", "<s>", "</s>"], dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>")),
    "gemma": (
        ["<pad>", "<eos>", "<bos>", "<unk>"],
        dict(pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"),
    ),
    "t5": (["<pad>", "</s>", "<unk>"], dict(pad_token="<pad>", eos_token="</s>", unk_token="<unk>")),
    "bart": (
        ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        dict(
            bos_token="<s>",
            pad_token="<pad>",
            eos_token="</s>",
            unk_token="<unk>",
            mask_token="<mask>",
            cls_token="<s>",
            sep_token="</s>",
        ),
    ),
    "bert": (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"),
    ),
}

WORDS = (
    "this is a test prompt hello world the quick brown fox jumps over lazy dog classify if the tweet is a complaint "
    "or not label positive negative question answer summarize translate english german french text input output "
    "prefix tuning prompt learning virtual tokens model adapter"
).split()


def _tokenizer(family: str, vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials, roles = SPECIALS[family]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for word in WORDS + [".", ",", "!", "?"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]:
        vocab.setdefault(word, len(vocab))
    for i in range(len(vocab), min(vocab_size, 200)):
        vocab[f"tok{i}"] = i
    unk = roles.get("unk_token", specials[0])
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    if family == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
    elif family == "t5":
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **roles)
    if family in ("gpt2", "llama") and fast.pad_token is None:
        pass  # like the real GPT-2 / Llama tokenizers: no pad token
    return fast


def _revision(model_id: str) -> str:
    return hashlib.sha1(f"minipeft-peft-suite/{VERSION}/{model_id}".encode()).hexdigest()


def build_one(cache: Path, model_id: str) -> Path:
    import torch
    import transformers
    from transformers import AutoConfig

    family, auto_name, model_type, kwargs = MODELS[model_id]
    repo = cache / ("models--" + model_id.replace("/", "--"))
    rev = _revision(model_id)
    snap = repo / "snapshots" / rev
    if (snap / "config.json").exists() and (repo / "refs" / "main").read_text() == rev:
        return snap
    if repo.exists():
        shutil.rmtree(repo)
    tmp = repo / "snapshots" / (rev + ".tmp")
    tmp.mkdir(parents=True)
    torch.manual_seed(int(rev[:8], 16))
    config = AutoConfig.for_model(model_type, **kwargs)
    auto = getattr(transformers, auto_name)
    model = auto.from_config(config)
    model.save_pretrained(tmp)
    _tokenizer(family, config.vocab_size if hasattr(config, "vocab_size") else 1000).save_pretrained(tmp)
    cfg = json.loads((tmp / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    (tmp / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    (tmp / "README.md").write_text(
        f"Offline stand-in for {model_id}, generated by scripts/peft_suite/make_hub_cache.py (random weights).\n"
    )
    tmp.rename(snap)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    return snap


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache", type=Path)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.cache.mkdir(parents=True, exist_ok=True)
    for model_id in args.only or MODELS:
        snap = build_one(args.cache, model_id)
        print(f"{model_id} -> {snap}", file=sys.stderr)
    (args.cache / "peft-suite-models.json").write_text(json.dumps(sorted(MODELS), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
