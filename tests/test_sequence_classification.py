"""Sequence classification (TaskType.SEQ_CLS): P-Tuning v2 on BERT-style encoders, against PEFT.

Tiny BertForSequenceClassification and RobertaForSequenceClassification (the paper's encoders,
head ``classifier``) and LlamaForSequenceClassification (a decoder, head ``score``), random weights
built from configs: the same prefix and head give PEFT's logits, loss and parameter counts; the
adapter files go both ways; only the prefix and the head learn; bad heads are refused by name.
"""

from __future__ import annotations

import copy
import json

import peft
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    LlamaConfig,
    LlamaForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from minipeft import (
    ModulesToSaveWrapper,
    PeftModel,
    PeftModelForSequenceClassification,
    PrefixTuningConfig,
    PromptTuningConfig,
    TaskType,
    get_peft_model,
)

ATOL = 1e-5
VOCAB, HIDDEN, LAYERS, NUM_LABELS, NUM_VIRTUAL = 128, 32, 3, 3, 5
# a larger initializer_range than the default 0.02: otherwise a tiny model's logits barely depend on its input
COMMON = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_attention_heads=4, intermediate_size=64, initializer_range=0.2)


def tiny_bert(num_labels: int = NUM_LABELS) -> BertForSequenceClassification:
    config = BertConfig(
        **COMMON, num_hidden_layers=LAYERS, max_position_embeddings=64, num_labels=num_labels, pad_token_id=0
    )
    return BertForSequenceClassification(config)


def tiny_roberta(num_labels: int = NUM_LABELS) -> RobertaForSequenceClassification:
    config = RobertaConfig(
        **COMMON, num_hidden_layers=LAYERS, max_position_embeddings=64, num_labels=num_labels, pad_token_id=1
    )
    return RobertaForSequenceClassification(config)


def tiny_llama(num_labels: int = NUM_LABELS) -> LlamaForSequenceClassification:
    config = LlamaConfig(
        **COMMON, num_hidden_layers=LAYERS, num_key_value_heads=2, num_labels=num_labels, pad_token_id=0
    )
    return LlamaForSequenceClassification(config)


MODELS = {"bert": tiny_bert, "roberta": tiny_roberta, "llama-score": tiny_llama}
HEAD = {"bert": "classifier", "roberta": "classifier", "llama-score": "score"}


@pytest.fixture(params=sorted(MODELS))
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


def base_model(arch: str, num_labels: int = NUM_LABELS) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[arch](num_labels).eval()


def batch_for(model: nn.Module) -> dict[str, torch.Tensor]:
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


def seq_cls_config(prefix_projection: bool = False, **kwargs) -> PrefixTuningConfig:
    return PrefixTuningConfig(
        task_type=TaskType.SEQ_CLS, num_virtual_tokens=NUM_VIRTUAL, prefix_projection=prefix_projection, **kwargs
    )


def peft_config(prefix_projection: bool = False, **kwargs) -> peft.PrefixTuningConfig:
    return peft.PrefixTuningConfig(
        task_type="SEQ_CLS", num_virtual_tokens=NUM_VIRTUAL, prefix_projection=prefix_projection, **kwargs
    )


def trained_head(model, arch: str) -> nn.Module:
    """The trainable copy of the head, in minipeft's or PEFT's model (same names)."""
    return model.get_base_model().get_submodule(HEAD[arch]).modules_to_save["default"]


def make_pair(base: nn.Module, arch: str, prefix_projection: bool = False):
    """The same prefix and head in minipeft and in PEFT, over two copies of ``base``.

    The head is moved away from the base model's, so a head that is not used (or not saved, or not
    loaded) shows in the logits.
    """
    torch.manual_seed(1)
    ours = get_peft_model(copy.deepcopy(base), seq_cls_config(prefix_projection)).eval()
    theirs = peft.get_peft_model(copy.deepcopy(base), peft_config(prefix_projection)).eval()
    with torch.no_grad():
        for param in ours.prompt_encoder.parameters():
            param.mul_(0.5)
        for param in trained_head(ours, arch).parameters():
            param.add_(torch.randn_like(param))
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    trained_head(theirs, arch).load_state_dict(trained_head(ours, arch).state_dict())
    return ours, theirs


def logits(model, **inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def test_get_peft_model_freezes_the_backbone_and_wraps_the_head_as_peft(arch):
    base = base_model(arch)
    ours, theirs = make_pair(base, arch)
    assert isinstance(ours, PeftModelForSequenceClassification)
    assert ours.active_peft_config.modules_to_save == ["classifier", "score"]
    assert ours.cls_layer_name == theirs.cls_layer_name == HEAD[arch]
    wrapper = ours.get_base_model().get_submodule(HEAD[arch])
    assert isinstance(wrapper, ModulesToSaveWrapper)
    assert not any(p.requires_grad for p in wrapper.original_module.parameters())
    trainable = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {name for name, p in theirs.named_parameters() if p.requires_grad}
    head = f"base_model.{HEAD[arch]}.modules_to_save.default."
    assert trainable == {"prompt_encoder.default.embedding.weight"} | {
        head + name for name, _ in wrapper.original_module.named_parameters()
    }


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_same_logits_and_loss_as_peft(arch, prefix_projection):
    base = base_model(arch)
    ours, theirs = make_pair(base, arch, prefix_projection)
    batch = batch_for(base)
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
    base = base_model(arch)
    ours, theirs = make_pair(base, arch)
    batch = batch_for(base)
    position_ids = torch.arange(batch["input_ids"].shape[1]).expand(2, -1)
    a = logits(ours, **batch, position_ids=position_ids)
    assert (a - logits(theirs, **batch, position_ids=position_ids)).abs().max() <= ATOL
    if arch == "bert":  # BERT counts positions from the cache length: explicit 0.. are shifted to the same
        assert (a - logits(ours, **batch)).abs().max() <= ATOL


def test_prefix_reaches_bert_as_a_dynamic_cache_with_shifted_positions():
    """How PEFT feeds BERT, step by step: DynamicCache, mask grown on the left, positions from P."""
    base = base_model("bert")
    ours, theirs = make_pair(base, "bert")
    batch = batch_for(base)
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


def test_right_padding_does_not_change_a_row():
    """The prefix's mask columns go in front: a padded row classifies as it does unpadded."""
    base = base_model("bert")
    ours, _ = make_pair(base, "bert")
    batch = batch_for(base)
    alone = {k: v[1:, :6] for k, v in batch.items()}  # row 1 without its 3 padding tokens
    assert (logits(ours, **batch)[1] - logits(ours, **alone)[0]).abs().max() <= ATOL


def test_training_mode_dropout_matches_peft():
    """Same seed, same dropout masks: minipeft runs the same operations in the same order as PEFT."""
    base = base_model("bert")
    ours, theirs = make_pair(base, "bert")
    batch = batch_for(base)
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
    base = base_model(arch)
    ours = get_peft_model(copy.deepcopy(base), seq_cls_config(prefix_projection)).train()
    original = {k: v.clone() for k, v in base.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=0.1)
    ours(**batch_for(base), labels=torch.tensor([1, 0])).loss.backward()
    with_grad = {name for name, p in ours.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    expected = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert with_grad == expected
    assert any(name.startswith("prompt_encoder.") for name in with_grad)
    assert any(".modules_to_save.default." in name for name in with_grad)
    if prefix_projection:
        assert any(".transform." in name for name in with_grad)
    optimizer.step()
    # the backbone and the original head are untouched; only the head's copy moved
    wrapper = ours.get_base_model().get_submodule(HEAD[arch])
    for key, value in ours.get_base_model().state_dict().items():
        if ".modules_to_save." not in key:
            assert torch.equal(value, original[key.replace(".original_module", "")]), key
    moved = wrapper.modules_to_save["default"].state_dict()
    assert all(not torch.equal(moved[key], value) for key, value in wrapper.original_module.state_dict().items())


def test_print_trainable_parameters_matches_peft(arch, capsys):
    base = base_model(arch)
    ours, theirs = make_pair(base, arch)
    ours.print_trainable_parameters()
    line = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert line == capsys.readouterr().out
    # PEFT's count: the prefix and the head's copy train; "all" holds the base model, its head's copy and the prefix
    head = sum(p.numel() for p in ours.get_base_model().get_submodule(HEAD[arch]).original_module.parameters())
    prefix = NUM_VIRTUAL * 2 * LAYERS * ours.active_peft_config.token_dim
    trainable, total = prefix + head, sum(p.numel() for p in base.parameters()) + prefix + head
    assert (
        line
        == f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}\n"
    )


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_minipeft_adapter_loads_in_peft_with_same_logits(arch, prefix_projection, tmp_path):
    base = base_model(arch)
    ours, _ = make_pair(base, arch, prefix_projection)
    ours.save_pretrained(tmp_path)
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    assert isinstance(theirs, peft.PeftModelForSequenceClassification)
    batch = batch_for(base)
    assert (logits(ours, **batch) - logits(theirs, **batch)).abs().max() <= ATOL


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_peft_adapter_loads_in_minipeft_with_same_logits(arch, prefix_projection, tmp_path):
    base = base_model(arch)
    _, theirs = make_pair(base, arch, prefix_projection)
    theirs.save_pretrained(tmp_path)
    ours = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert isinstance(ours, PeftModelForSequenceClassification)
    batch = batch_for(base)
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
    base = base_model(arch)
    ours, theirs = make_pair(base, arch)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")

    def shapes(folder):
        with safe_open(folder / "adapter_model.safetensors", "pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}

    saved = shapes(tmp_path / "ours")
    assert saved == shapes(tmp_path / "theirs")
    head = ours.get_base_model().get_submodule(HEAD[arch]).original_module
    assert saved == {
        "prompt_embeddings": (NUM_VIRTUAL, 2 * LAYERS * ours.active_peft_config.token_dim),
        **{f"base_model.{HEAD[arch]}.{key}": tuple(v.shape) for key, v in head.state_dict().items()},
    }
    mine = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    reference = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    assert mine["task_type"] == "SEQ_CLS" and mine["modules_to_save"] == ["classifier", "score"]
    assert reference["modules_to_save"] == ["classifier", "score"] * 2  # PEFT appends the names twice
    drop = ("peft_version", "modules_to_save")
    assert mine == {k: v for k, v in reference.items() if k not in drop} | {"modules_to_save": mine["modules_to_save"]}
    card = (tmp_path / "ours" / "README.md").read_text()
    assert "AutoModelForSequenceClassification" in card and "text-classification" in card


def test_extra_modules_to_save_are_trained_and_saved_as_peft_does(tmp_path):
    base = base_model("bert")
    ours = get_peft_model(copy.deepcopy(base), seq_cls_config(modules_to_save=["pooler"])).eval()
    theirs = peft.get_peft_model(copy.deepcopy(base), peft_config(modules_to_save=["pooler"])).eval()
    assert ours.active_peft_config.modules_to_save == ["pooler", "classifier", "score"]
    assert {n for n, p in ours.named_parameters() if p.requires_grad} == {
        n for n, p in theirs.named_parameters() if p.requires_grad
    }
    with torch.no_grad():
        ours.get_base_model().bert.pooler.dense.weight.add_(1.0)  # the trained copy: the wrapper forwards to it
    ours.save_pretrained(tmp_path)
    assert "base_model.bert.pooler.dense.weight" in load_file(tmp_path / "adapter_model.safetensors")
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    batch = batch_for(base)
    assert (logits(ours, **batch) - logits(loaded, **batch)).abs().max() <= ATOL
    again = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert (logits(ours, **batch) - logits(again, **batch)).abs().max() <= ATOL


def test_head_for_another_num_labels_is_refused_and_model_untouched(tmp_path):
    source, _ = make_pair(base_model("bert", num_labels=3), "bert")
    source.save_pretrained(tmp_path)
    target = base_model("bert", num_labels=2)
    with pytest.raises(
        ValueError,
        match=r"classifier\.weight has shape \(3, 32\), the model needs \(2, 32\); .*\.bias has shape \(3,\), .* \(2,\)",
    ):
        PeftModel.from_pretrained(target, tmp_path)
    assert isinstance(target.classifier, nn.Linear)
    assert all(p.requires_grad for p in target.parameters())


def test_adapter_without_its_head_is_refused(tmp_path):
    source, _ = make_pair(base_model("bert"), "bert")
    source.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    save_file({"prompt_embeddings": load_file(path)["prompt_embeddings"]}, path)
    with pytest.raises(ValueError, match=r"has no base_model\.classifier\.weight, base_model\.classifier\.bias"):
        PeftModel.from_pretrained(base_model("bert"), tmp_path)


def test_stray_head_tensor_is_refused(tmp_path):
    source, _ = make_pair(base_model("bert"), "bert")
    source.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    save_file({**load_file(path), "base_model.classifierx.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match=r"base_model\.classifierx\.weight, which no module"):
        PeftModel.from_pretrained(base_model("bert"), tmp_path)


def test_model_without_a_head_is_refused():
    torch.manual_seed(0)
    backbone = BertModel(tiny_bert().config)
    with pytest.raises(
        ValueError, match=r"No module of this BertModel matches modules_to_save=\['classifier', 'score'\]"
    ):
        get_peft_model(backbone, seq_cls_config())
    assert all(p.requires_grad for p in backbone.parameters())


def test_wrapping_a_wrapped_base_model_is_refused():
    base = base_model("bert")
    get_peft_model(base, seq_cls_config())
    with pytest.raises(ValueError, match="already wrapped"):
        get_peft_model(base, seq_cls_config())


def test_model_that_takes_no_cache_is_refused():
    class NoCache(BertForSequenceClassification):
        def forward(self, input_ids=None, attention_mask=None, labels=None):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    torch.manual_seed(0)
    with pytest.raises(TypeError, match="takes no past_key_values"):
        get_peft_model(NoCache(tiny_bert().config), seq_cls_config())


def test_model_that_drops_the_prefix_is_caught():
    class DropsCache(BertForSequenceClassification):
        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            kwargs.pop("past_key_values")
            return super().forward(input_ids=input_ids, attention_mask=attention_mask[:, -input_ids.shape[1] :])

    torch.manual_seed(0)
    model = get_peft_model(DropsCache(tiny_bert().config).eval(), seq_cls_config())
    with pytest.raises(RuntimeError, match="ignored the prefix"):
        model(**batch_for(model.get_base_model()))


def test_config_errors_and_user_config_untouched():
    with pytest.raises(ValueError, match="modules_to_save.*SEQ_CLS"):
        PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4, modules_to_save=["lm_head"])
    with pytest.raises(ValueError, match="modules_to_save must be a list of module names"):
        seq_cls_config(modules_to_save="classifier")
    with pytest.raises(ValueError, match="task_type='TOKEN_CLS' is not supported"):
        PromptTuningConfig(task_type=TaskType.TOKEN_CLS, num_virtual_tokens=4)
    config = seq_cls_config(modules_to_save=["pooler"])
    get_peft_model(base_model("bert"), config)
    assert config.modules_to_save == ["pooler"] and config.num_layers is None
    model = get_peft_model(base_model("bert"), seq_cls_config())
    with pytest.raises(ValueError, match="pass no past_key_values"):
        model(**batch_for(model.get_base_model()), past_key_values=model.get_prompt(2))
