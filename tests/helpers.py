"""What the tests share: tiny randomly initialised models of every architecture (built from config
objects, no download), their batches, one tolerance and one ``make_pair``.

Test files import from here (``from helpers import ...``); pytest puts ``tests/`` on ``sys.path``
(``rootdir/conftest`` import mode), also when ``scripts/test_installed.sh`` runs a copy of ``tests/``
against the installed wheel. ``conftest.py`` holds only the fixtures.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peft
import torch
from torch import nn
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    BloomConfig,
    BloomForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    LlamaModel,
    RobertaConfig,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
    T5Config,
    T5ForConditionalGeneration,
)

from minipeft import LABELS, PrefixTuningConfig, TaskType, get_peft_model

# the checkout (scripts/test_installed.sh runs a copy of tests/ elsewhere and says where the checkout is)
REPO = Path(os.environ.get("MINIPEFT_REPO") or Path(__file__).resolve().parent.parent)

#: minipeft against PEFT (and any two ways of computing the same logits): the largest absolute difference allowed.
ATOL = 1e-5
#: The tiny models' vocabulary.
VOCAB = 128
#: The classes of the embedded encoder's classifier (the ``minilm`` fixture).
MINILM_LABELS = {0: "complaint", 1: "no complaint"}


# --- decoder-only language models (TaskType.CAUSAL_LM) ---------------------------------------------


def tiny_gpt2(**overrides: Any) -> GPT2LMHeadModel:
    config = dict(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=3,
        n_head=4,
        n_positions=128,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return GPT2LMHeadModel(GPT2Config(**{**config, **overrides}))


def tiny_llama(**overrides: Any) -> LlamaForCausalLM:
    """Grouped-query attention: 4 query heads share 2 key/value heads."""
    config = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(LlamaConfig(**{**config, **overrides}))


def tiny_bloom(**overrides: Any) -> BloomForCausalLM:
    # a larger initializer_range than the default 0.02: otherwise the tiny model ignores its context
    config = dict(vocab_size=VOCAB, hidden_size=32, n_layer=3, n_head=4, pad_token_id=0, initializer_range=0.2)
    return BloomForCausalLM(BloomConfig(**{**config, **overrides}))


#: The ``tiny_model`` fixture's architectures.
CAUSAL_LM_MODELS = {"gpt2": tiny_gpt2, "llama-gqa": tiny_llama, "bloom": tiny_bloom}


def tiny_llama_for(tokenizer: Any) -> LlamaForCausalLM:
    """A 2-layer tiny Llama (seed 0, eval mode) over ``tokenizer``'s vocabulary, for the training helpers."""
    torch.manual_seed(0)
    return tiny_llama(
        vocab_size=len(tokenizer),
        num_hidden_layers=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    ).eval()


def padded_batch(vocab_size: int = VOCAB, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of 7 tokens; the first is left-padded by 3 (token 0, mask 0)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab_size, (2, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    input_ids[0, :3] = 0
    attention_mask[0, :3] = 0
    return input_ids, attention_mask


def wrap(model: nn.Module, **kwargs: Any) -> Any:
    """``model`` with a fresh causal-LM prefix (4 virtual tokens unless given)."""
    kwargs.setdefault("num_virtual_tokens", 4)
    return get_peft_model(model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, **kwargs))


# --- sequence classifiers (TaskType.SEQ_CLS) --------------------------------------------------------

NUM_LABELS, SEQ_CLS_LAYERS = 3, 3
# a larger initializer_range than the default 0.02: otherwise a tiny model's logits barely depend on its input
SEQ_CLS_COMMON = dict(
    vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, intermediate_size=64, initializer_range=0.2
)


def tiny_bert_classifier(num_labels: int = NUM_LABELS, **overrides: Any) -> BertForSequenceClassification:
    config = dict(**SEQ_CLS_COMMON, num_hidden_layers=SEQ_CLS_LAYERS, max_position_embeddings=64, num_labels=num_labels)
    return BertForSequenceClassification(BertConfig(**{**config, "pad_token_id": 0, **overrides}))


def tiny_roberta_classifier(num_labels: int = NUM_LABELS, **overrides: Any) -> RobertaForSequenceClassification:
    config = dict(**SEQ_CLS_COMMON, num_hidden_layers=SEQ_CLS_LAYERS, max_position_embeddings=64, num_labels=num_labels)
    return RobertaForSequenceClassification(RobertaConfig(**{**config, "pad_token_id": 1, **overrides}))


def tiny_llama_classifier(num_labels: int = NUM_LABELS, **overrides: Any) -> LlamaForSequenceClassification:
    """A decoder with a ``score`` head (BERT-likes call theirs ``classifier``)."""
    config = dict(**SEQ_CLS_COMMON, num_hidden_layers=SEQ_CLS_LAYERS, num_key_value_heads=2, num_labels=num_labels)
    return LlamaForSequenceClassification(LlamaConfig(**{**config, "pad_token_id": 0, **overrides}))


SEQ_CLS_MODELS = {
    "bert": tiny_bert_classifier,
    "roberta": tiny_roberta_classifier,
    "llama-score": tiny_llama_classifier,
}
#: Each architecture's classification head, the module PEFT trains in full (``modules_to_save``).
SEQ_CLS_HEAD = {"bert": "classifier", "roberta": "classifier", "llama-score": "score"}


def seq_cls_model(arch: str, num_labels: int = NUM_LABELS) -> nn.Module:
    """A tiny classifier of ``arch`` (a key of :data:`SEQ_CLS_MODELS`), seed 0, eval mode."""
    torch.manual_seed(0)
    return SEQ_CLS_MODELS[arch](num_labels).eval()


def seq_cls_batch(model: nn.Module) -> dict[str, torch.Tensor]:
    """Two rows of 9 tokens, the second right-padded by 3 (BERT's padding side); BERT gets two segments."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, VOCAB, (2, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    input_ids[1, 6:] = model.config.pad_token_id
    attention_mask[1, 6:] = 0
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if model.config.model_type == "bert":
        token_type_ids = torch.zeros_like(input_ids)
        token_type_ids[:, 4:] = 1
        batch["token_type_ids"] = token_type_ids
    return batch


def tiny_bert_classifier_for(tokenizer: Any) -> BertForSequenceClassification:
    """A 2-layer tiny BERT classifier of the complaint labels (seed 0, eval mode) over ``tokenizer``'s vocabulary."""
    torch.manual_seed(0)
    return tiny_bert_classifier(
        len(LABELS),
        vocab_size=len(tokenizer),
        num_hidden_layers=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    ).eval()


# --- token classifiers, extractive QA, bare backbones (TOKEN_CLS, QUESTION_ANS, FEATURE_EXTRACTION) ---------

#: The tiny token classifiers' tag set size.
NUM_TOKEN_LABELS = 5
#: ``(task, arch)`` -> (model class, config class); every model has SEQ_CLS_COMMON's shape and SEQ_CLS_LAYERS layers.
ENCODER_TASK_CLASSES = {
    ("token", "bert"): (BertForTokenClassification, BertConfig),
    ("token", "roberta"): (RobertaForTokenClassification, RobertaConfig),
    ("qa", "bert"): (BertForQuestionAnswering, BertConfig),
    ("qa", "roberta"): (RobertaForQuestionAnswering, RobertaConfig),
    ("bare", "bert"): (BertModel, BertConfig),
    ("bare", "roberta"): (RobertaModel, RobertaConfig),
    ("bare", "llama"): (LlamaModel, LlamaConfig),
}


def encoder_task_model(task: str, arch: str) -> nn.Module:
    """A tiny model of ``task`` (``"token"``: per-token tags, head ``classifier``; ``"qa"``: answer spans,
    head ``qa_outputs``; ``"bare"``: no head) and ``arch`` (``"bert"``, ``"roberta"``; ``"llama"`` bare only),
    seed 0, eval mode, random weights. BERT pads with 0, RoBERTa with 1, Llama with 0."""
    model_cls, config_cls = ENCODER_TASK_CLASSES[task, arch]
    config = dict(**SEQ_CLS_COMMON, num_hidden_layers=SEQ_CLS_LAYERS, max_position_embeddings=64)
    config["pad_token_id"] = 1 if arch == "roberta" else 0
    if task == "token":
        config["num_labels"] = NUM_TOKEN_LABELS
    if arch == "llama":
        config["num_key_value_heads"] = 2
    torch.manual_seed(0)
    return model_cls(config_cls(**config)).eval()


# --- encoder-decoders (TaskType.SEQ_2_SEQ_LM) -------------------------------------------------------

D_MODEL, HEADS = 32, 4


def tiny_t5(layers: int = 2, decoder_layers: int | None = None) -> T5ForConditionalGeneration:
    config = T5Config(
        vocab_size=VOCAB,
        d_model=D_MODEL,
        d_kv=D_MODEL // HEADS,
        d_ff=64,
        num_layers=layers,
        num_decoder_layers=decoder_layers,
        num_heads=HEADS,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5ForConditionalGeneration(config)


def tiny_bart(layers: int = 2, decoder_layers: int | None = None) -> BartForConditionalGeneration:
    # a larger init_std than the default 0.02: otherwise the tiny model barely depends on its input
    config = BartConfig(
        vocab_size=VOCAB,
        d_model=D_MODEL,
        encoder_layers=layers,
        decoder_layers=decoder_layers or layers,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        init_std=0.2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    return BartForConditionalGeneration(config)


SEQ2SEQ_MODELS = {"t5": tiny_t5, "bart": tiny_bart}


def seq2seq_model(arch: str, layers: int = 2, decoder_layers: int | None = None) -> nn.Module:
    """A tiny encoder-decoder of ``arch`` (a key of :data:`SEQ2SEQ_MODELS`), seed 0, eval mode."""
    torch.manual_seed(0)
    return SEQ2SEQ_MODELS[arch](layers, decoder_layers).eval()


def seq2seq_batch(model: nn.Module) -> dict[str, torch.Tensor]:
    """Two source rows of 7 tokens, the second right-padded by 3; two target rows of 5, the second padded by 2."""
    generator = torch.Generator().manual_seed(0)
    pad = model.config.pad_token_id
    input_ids = torch.randint(3, VOCAB, (2, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    input_ids[1, 4:], attention_mask[1, 4:] = pad, 0
    labels = torch.randint(3, VOCAB, (2, 5), generator=generator)
    labels[1, 3:] = -100
    decoder_input_ids = torch.cat([torch.full((2, 1), model.config.decoder_start_token_id), labels[:, :-1]], 1)
    decoder_input_ids[decoder_input_ids == -100] = pad
    decoder_attention_mask = (labels != -100).long()
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "decoder_input_ids": decoder_input_ids,
        "decoder_attention_mask": decoder_attention_mask,
        "labels": labels,
    }


# --- the same adapter in minipeft and in PEFT -------------------------------------------------------


def config_pair(config_cls: type = PrefixTuningConfig, task_type: TaskType | str = TaskType.CAUSAL_LM, **kwargs: Any):
    """The same adapter configuration for minipeft and for PEFT (``peft.PrefixTuningConfig``, ...)."""
    task_type = TaskType(task_type)
    ours = config_cls(task_type=task_type, **kwargs)
    theirs = getattr(peft, config_cls.__name__)(task_type=task_type.value, **copy.deepcopy(kwargs))
    return ours, theirs


def trained_head(model: Any, name: str) -> nn.Module:
    """The trainable copy of the head ``name`` (``classifier``, ``score``) in minipeft's or PEFT's model."""
    return model.get_base_model().get_submodule(name).modules_to_save["default"]


def add_noise(head: nn.Module) -> None:
    """Move every parameter of ``head`` by N(0, 1) noise (in place)."""
    for param in head.parameters():
        param.add_(torch.randn_like(param))


def make_pair(
    base: nn.Module,
    config_cls: type = PrefixTuningConfig,
    *,
    task_type: TaskType | str = TaskType.CAUSAL_LM,
    num_virtual_tokens: int = 5,
    seed: int = 1,
    scale: float = 0.5,
    head: str | None = None,
    move_head: Callable[[nn.Module], Any] = add_noise,
    **config_kwargs: Any,
):
    """The same adapter in minipeft and in PEFT, over two copies of ``base``: ``(ours, theirs)``, eval mode.

    Both are built after ``torch.manual_seed(seed)`` from :func:`config_pair`; minipeft's adapter
    weights are multiplied by ``scale`` (a prefix or prompt of realistic size: random N(0, 1) rows
    swamp a tiny model) and copied into PEFT's. With ``head`` (a SEQ_CLS head's module name), its
    trainable copy is moved away from the base model's by ``move_head`` and copied too, so a head
    that is not used (or not saved, or not loaded) shows in the logits.
    """
    torch.manual_seed(seed)
    ours_config, peft_config = config_pair(
        config_cls, task_type, num_virtual_tokens=num_virtual_tokens, **config_kwargs
    )
    ours = get_peft_model(copy.deepcopy(base), ours_config).eval()
    theirs = peft.get_peft_model(copy.deepcopy(base), peft_config).eval()
    with torch.no_grad():
        for param in ours.prompt_encoder.parameters():
            param.mul_(scale)
        if head is not None:
            move_head(trained_head(ours, head))
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    if head is not None:
        trained_head(theirs, head).load_state_dict(trained_head(ours, head).state_dict())
    return ours, theirs


def logits(model: Any, **inputs: Any) -> torch.Tensor:
    """``model(**inputs).logits`` without gradients."""
    with torch.no_grad():
        return model(**inputs).logits
