"""P-Tuning v1 (PromptEncoderConfig, PromptEncoder): a soft prompt produced by an MLP or an LSTM, against PEFT.

The same encoder weights (``make_pair`` copies minipeft's into PEFT's) give PEFT's table and so PEFT's
logits, loss, gradients and generated tokens on tiny causal LMs (GPT-2, Llama with grouped-query
attention; a left-padded batch), sequence classifiers (BERT, RoBERTa, with their trained head) and
encoder-decoders (T5, BART: PEFT's ``2 * num_virtual_tokens`` rows, the encoder's input takes the first
half). Adapter files go both ways; minipeft also writes ``prompt_encoder.safetensors``, so that training
resumes with the encoder; a PEFT folder (the table only) resumes from the table, with a warning.
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
    VOCAB,
    logits,
    make_pair,
    padded_batch,
    seq2seq_batch,
    seq2seq_model,
    seq_cls_batch,
    seq_cls_model,
    tiny_gpt2,
    tiny_llama,
)
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from minipeft import (
    PeftModel,
    PeftModelForCausalLM,
    PeftModelForSeq2SeqLM,
    PeftModelForSequenceClassification,
    PromptEncoder,
    PromptEncoderConfig,
    TaskType,
)

NUM_VIRTUAL = 4
HIDDEN = 16  # the encoder's hidden width (encoder_hidden_size), not the models' 32: a mix-up of the two shows
ENCODER_TYPES = ["MLP", "LSTM"]

# A larger initializer_range than GPT-2's default: the default tiny GPT-2 repeats one token whatever its context,
# which would hide a prompt that generate() drops or misplaces.
CAUSAL_LMS = {"gpt2": lambda: tiny_gpt2(initializer_range=0.2), "llama-gqa": tiny_llama}


@pytest.fixture(params=ENCODER_TYPES)
def encoder_type(request: pytest.FixtureRequest) -> str:
    return request.param


def causal_lm(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return CAUSAL_LMS[arch]().eval()


def p_tuning_pair(base: nn.Module, encoder_type: str, task_type: TaskType = TaskType.CAUSAL_LM, **kwargs):
    """The same P-Tuning encoder (and, for SEQ_CLS, the same moved head) in minipeft and in PEFT."""
    if task_type is TaskType.SEQ_CLS:
        kwargs.setdefault("head", "classifier")
    return make_pair(
        base,
        PromptEncoderConfig,
        task_type=task_type,
        num_virtual_tokens=NUM_VIRTUAL,
        encoder_reparameterization_type=encoder_type,
        encoder_hidden_size=HIDDEN,
        **kwargs,
    )


def strengthen(model) -> None:
    """Scale the encoder's output layer by 20 (in place): a prompt strong enough to change generated tokens."""
    with torch.no_grad():
        for param in model.prompt_encoder["default"].mlp_head[-1].parameters():
            param.mul_(20)


def sgd_steps(model, inputs: dict, steps: int, seed: int = 0) -> None:
    """``steps`` SGD steps (lr 0.1) on ``model(**inputs).loss`` in training mode, each after ``torch.manual_seed``."""
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for step in range(steps):
        torch.manual_seed(seed + step)  # the same dropout masks for any two models given the same seed
        optimizer.zero_grad()
        model(**inputs).loss.backward()
        optimizer.step()
    model.eval()


def saved_shapes(folder, file_name: str = "adapter_model.safetensors") -> dict[str, tuple[int, ...]]:
    with safe_open(folder / file_name, "pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


def saved_config(folder) -> dict:
    config = json.loads((folder / "adapter_config.json").read_text())
    config.pop("peft_version")  # the writer's PEFT version
    return config


# --- the module -------------------------------------------------------------------------------------


def test_prompt_encoder_is_peft_module(encoder_type):
    """Same parameter names and shapes (PEFT's state dict loads strictly), same output for the same weights."""
    kwargs = dict(
        num_virtual_tokens=NUM_VIRTUAL,
        token_dim=32,
        num_transformer_submodules=1,
        encoder_reparameterization_type=encoder_type,
        encoder_hidden_size=HIDDEN,
    )
    torch.manual_seed(0)
    ours = PromptEncoder(PromptEncoderConfig(**kwargs))
    theirs = peft.PromptEncoder(peft.PromptEncoderConfig(**kwargs))
    theirs.load_state_dict(ours.state_dict())
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    indices = torch.arange(NUM_VIRTUAL).expand(2, -1)
    with torch.no_grad():
        out = ours(indices)
        assert out.shape == (2, NUM_VIRTUAL, 32)
        assert (out - theirs(indices)).abs().max() <= 1e-6
    frozen = PromptEncoder(PromptEncoderConfig(**kwargs, inference_mode=True))  # a loaded adapter: the table only
    assert [name for name, _ in frozen.named_parameters()] == ["embedding.weight"]


def test_mlp_ignores_encoder_num_layers_with_peft_warning():
    kwargs = dict(
        num_virtual_tokens=NUM_VIRTUAL, token_dim=32, num_transformer_submodules=1, encoder_hidden_size=HIDDEN
    )
    with pytest.warns(UserWarning, match="the argument `encoder_num_layers` is ignored") as ours:
        mine = PromptEncoder(PromptEncoderConfig(**kwargs, encoder_num_layers=4))
    with pytest.warns(UserWarning, match="the argument `encoder_num_layers` is ignored") as theirs:
        reference = peft.PromptEncoder(peft.PromptEncoderConfig(**kwargs, encoder_num_layers=4))
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert {k: v.shape for k, v in mine.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}


# --- CAUSAL_LM ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(CAUSAL_LMS))
def test_causal_lm_same_logits_and_loss_as_peft(arch, encoder_type):
    base = causal_lm(arch)
    ours, theirs = p_tuning_pair(base, encoder_type)
    assert isinstance(ours, PeftModelForCausalLM)
    input_ids, attention_mask = padded_batch()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    with torch.no_grad():
        a = ours(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        b = theirs(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert a.logits.shape == (2, NUM_VIRTUAL + 7, VOCAB)  # the virtual tokens' positions are in the output
    assert (a.logits - b.logits).abs().max() <= ATOL
    assert abs(a.loss.item() - b.loss.item()) <= ATOL
    # the labels are padded with -100 for the virtual tokens: the last virtual token predicts the first real one
    expected = nn.functional.cross_entropy(a.logits[:, NUM_VIRTUAL - 1 : -1].reshape(-1, VOCAB), labels.reshape(-1))
    assert abs(a.loss.item() - expected.item()) <= 1e-6


@pytest.mark.parametrize("num_beams", [1, 3])
def test_causal_lm_same_greedy_and_beam_tokens_as_peft_on_a_left_padded_batch(encoder_type, num_beams):
    base = causal_lm("llama-gqa")
    ours, theirs = p_tuning_pair(base, encoder_type)
    strengthen(ours)
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    input_ids, attention_mask = padded_batch()
    kwargs = dict(
        input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6, do_sample=False, num_beams=num_beams
    )
    with torch.no_grad():
        tokens = ours.generate(**kwargs)
        assert torch.equal(tokens, theirs.generate(**kwargs))
        assert not torch.equal(tokens, base.generate(**kwargs)), "the prompt should change the tokens"


@pytest.mark.parametrize("num_beams", [1, 3])
def test_causal_lm_gpt2_tokens_equal_peft_unpadded_and_each_row_alone_left_padded(encoder_type, num_beams):
    base = causal_lm("gpt2")
    ours, theirs = p_tuning_pair(base, encoder_type)
    strengthen(ours)
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    kwargs = dict(max_new_tokens=6, do_sample=False, num_beams=num_beams, pad_token_id=0)
    unpadded = torch.randint(3, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        tokens = ours.generate(input_ids=unpadded, **kwargs)
        assert torch.equal(tokens, theirs.generate(input_ids=unpadded, **kwargs))
        assert not torch.equal(tokens, base.generate(input_ids=unpadded, **kwargs)), "the prompt should change them"
        batched = ours.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[:, 7:]
        reference = theirs.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[:, 7:]
        row0 = ours.generate(input_ids=input_ids[:1, 3:], **kwargs)[:, 4:]
        row1 = ours.generate(input_ids=input_ids[1:], **kwargs)[:, 7:]
    assert torch.equal(batched, torch.cat([row0, row1]))
    assert torch.equal(batched[1], reference[1])
    # PEFT's padded row 0 differs from the row alone: its generate drops position_ids, so GPT-2's absolute positions
    # count the 3 pad tokens (minipeft's start after them, as the row alone's do).


def test_causal_lm_training_mode_gradients_equal_peft(encoder_type):
    """Training mode (dropout in the model and between the LSTM's layers), same seed: PEFT's loss and gradients."""
    base = causal_lm("llama-gqa")
    ours, theirs = p_tuning_pair(base, encoder_type, encoder_dropout=0.1)
    input_ids, attention_mask = padded_batch()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    losses = []
    for model in (ours, theirs):
        model.train()
        torch.manual_seed(0)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) <= ATOL
    grads = [{n: p.grad for n, p in m.prompt_encoder["default"].named_parameters()} for m in (ours, theirs)]
    assert grads[0].keys() == grads[1].keys()
    assert all(grads[0][name].abs().sum() > 0 for name in grads[0]), "every encoder parameter should learn"
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


def test_causal_lm_adapter_files_go_both_ways(encoder_type, tmp_path):
    base = causal_lm("llama-gqa")
    ours, theirs = p_tuning_pair(base, encoder_type)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    assert saved_shapes(tmp_path / "ours") == saved_shapes(tmp_path / "theirs") == {"prompt_embeddings": (4, 32)}
    assert saved_config(tmp_path / "ours") == saved_config(tmp_path / "theirs")
    input_ids, attention_mask = padded_batch()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask)
    expected = logits(ours, **inputs)
    loaded_in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    assert (logits(loaded_in_peft, **inputs) - expected).abs().max() <= ATOL
    loaded_in_minipeft = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "theirs")
    assert isinstance(loaded_in_minipeft, PeftModelForCausalLM)
    assert (logits(loaded_in_minipeft, **inputs) - expected).abs().max() <= ATOL
    kwargs = dict(**inputs, max_new_tokens=6, do_sample=False)
    with torch.no_grad():
        assert torch.equal(loaded_in_minipeft.generate(**kwargs), loaded_in_peft.generate(**kwargs))


# --- SEQ_CLS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_seq_cls_same_logits_and_loss_as_peft(arch, encoder_type):
    base = seq_cls_model(arch)
    ours, theirs = p_tuning_pair(base, encoder_type, TaskType.SEQ_CLS)
    assert isinstance(ours, PeftModelForSequenceClassification)
    batch = seq_cls_batch(base)  # BERT's has two segments
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        a, b = ours(**batch, labels=labels), theirs(**batch, labels=labels)
        without = ours.get_base_model()(**batch).logits  # the same head, no prompt
    assert a.logits.shape == (2, NUM_LABELS)
    assert (a.logits - b.logits).abs().max() <= ATOL
    assert abs(a.loss.item() - b.loss.item()) <= ATOL
    assert (a.logits - without).abs().max() > 1e-2, "the prompt should change the logits"


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_seq_cls_adapter_files_go_both_ways(arch, encoder_type, tmp_path):
    base = seq_cls_model(arch)
    ours, theirs = p_tuning_pair(base, encoder_type, TaskType.SEQ_CLS)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    head = {f"base_model.classifier.{k}": tuple(v.shape) for k, v in base.classifier.state_dict().items()}
    assert saved_shapes(tmp_path / "ours") == saved_shapes(tmp_path / "theirs")
    assert saved_shapes(tmp_path / "ours") == {"prompt_embeddings": (NUM_VIRTUAL, 32), **head}
    assert saved_config(tmp_path / "ours") == {
        **saved_config(tmp_path / "theirs"),
        "modules_to_save": ["classifier", "score"],  # PEFT writes the names twice
    }
    batch = seq_cls_batch(base)
    expected = logits(ours, **batch)
    loaded_in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    assert (logits(loaded_in_peft, **batch) - expected).abs().max() <= ATOL
    loaded_in_minipeft = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "theirs")
    assert isinstance(loaded_in_minipeft, PeftModelForSequenceClassification)
    assert (logits(loaded_in_minipeft, **batch) - expected).abs().max() <= ATOL
    assert not any(p.requires_grad for p in loaded_in_minipeft.parameters())


# --- SEQ_2_SEQ_LM -------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["t5", "bart"])
def test_seq2seq_same_logits_loss_and_tokens_as_peft(arch, encoder_type):
    base = seq2seq_model(arch)
    ours, theirs = p_tuning_pair(base, encoder_type, TaskType.SEQ_2_SEQ_LM)
    assert isinstance(ours, PeftModelForSeq2SeqLM)
    # PEFT's layout: 2 * num_virtual_tokens rows (2 submodules); the encoder's input takes the first half
    assert ours.prompt_table().shape == (1, 2 * NUM_VIRTUAL, 32)
    assert theirs.prompt_encoder["default"].embedding.weight.shape == (2 * NUM_VIRTUAL, 32)
    batch = seq2seq_batch(base)
    with torch.no_grad():
        a, b, without = ours(**batch), theirs(**batch), base(**batch)
    assert a.logits.shape == (2, 5, VOCAB)  # the decoder's positions only
    assert (a.logits - b.logits).abs().max() <= ATOL
    assert abs(a.loss.item() - b.loss.item()) <= ATOL
    assert (a.logits - without.logits).abs().max() > 1e-2, "the prompt should change the logits"
    strengthen(ours)
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6)
    changed = []
    with torch.no_grad():
        for num_beams in (1, 3):
            tokens = ours.generate(**kwargs, do_sample=False, num_beams=num_beams)
            assert torch.equal(tokens, theirs.generate(**kwargs, do_sample=False, num_beams=num_beams)), num_beams
            changed.append(not torch.equal(tokens, base.generate(**kwargs, do_sample=False, num_beams=num_beams)))
    assert any(changed), "the prompt should change the tokens"


@pytest.mark.parametrize("arch", ["t5", "bart"])
def test_seq2seq_adapter_files_go_both_ways(arch, encoder_type, tmp_path):
    base = seq2seq_model(arch)
    ours, theirs = p_tuning_pair(base, encoder_type, TaskType.SEQ_2_SEQ_LM)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    assert saved_shapes(tmp_path / "ours") == saved_shapes(tmp_path / "theirs")
    assert saved_shapes(tmp_path / "ours") == {"prompt_embeddings": (2 * NUM_VIRTUAL, 32)}
    assert saved_config(tmp_path / "ours") == saved_config(tmp_path / "theirs")
    batch = seq2seq_batch(base)
    expected = logits(ours, **batch)
    loaded_in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    assert (logits(loaded_in_peft, **batch) - expected).abs().max() <= ATOL
    loaded_in_minipeft = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "theirs")
    assert isinstance(loaded_in_minipeft, PeftModelForSeq2SeqLM)
    assert (logits(loaded_in_minipeft, **batch) - expected).abs().max() <= ATOL
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6)
    with torch.no_grad():
        assert torch.equal(loaded_in_minipeft.generate(**kwargs), loaded_in_peft.generate(**kwargs))


# --- parameters, training, resuming -----------------------------------------------------------------


def encoder_parameter_count(encoder_type: str, rows: int, dim: int = 32, hidden: int = HIDDEN) -> int:
    """PEFT's P-Tuning encoder, counted by hand: the embedding, then the MLP or the 2-layer bidirectional LSTM + MLP."""
    embedding = rows * dim
    if encoder_type == "MLP":  # dim -> hidden -> hidden -> dim
        return embedding + (dim * hidden + hidden) + (hidden * hidden + hidden) + (hidden * dim + dim)
    lstm = 2 * (4 * hidden * (dim + hidden) + 8 * hidden)  # layer 0, both directions (two bias vectors each)
    lstm += 2 * (4 * hidden * (2 * hidden + hidden) + 8 * hidden)  # layer 1 reads both directions' outputs
    return embedding + lstm + (2 * hidden * 2 * hidden + 2 * hidden) + (2 * hidden * dim + dim)


@pytest.mark.parametrize("task", ["CAUSAL_LM", "SEQ_CLS", "SEQ_2_SEQ_LM"])
def test_trainable_parameters_equal_peft(task, encoder_type, capsys):
    base = {"CAUSAL_LM": lambda: causal_lm("llama-gqa"), "SEQ_CLS": lambda: seq_cls_model("bert")}.get(
        task, lambda: seq2seq_model("t5")
    )()
    ours, theirs = p_tuning_pair(base, encoder_type, TaskType(task))
    trainable = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {name for name, p in theirs.named_parameters() if p.requires_grad}
    assert ours.get_nb_trainable_parameters() == theirs.get_nb_trainable_parameters()
    ours.print_trainable_parameters()
    line = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert line == capsys.readouterr().out
    rows = NUM_VIRTUAL * (2 if task == "SEQ_2_SEQ_LM" else 1)
    head = sum(p.numel() for p in base.classifier.parameters()) if task == "SEQ_CLS" else 0
    assert ours.get_nb_trainable_parameters()[0] == encoder_parameter_count(encoder_type, rows) + head


def test_training_resumes_with_the_same_encoder(encoder_type, tmp_path):
    """Trained, saved, loaded with is_trainable=True: the same encoder and head, and the next step is the same."""
    base = seq_cls_model("bert")
    model, _ = p_tuning_pair(base, encoder_type, TaskType.SEQ_CLS)
    inputs = {**seq_cls_batch(base), "labels": torch.tensor([0, 2])}
    before = {k: v.clone() for k, v in model.prompt_encoder["default"].state_dict().items()}
    sgd_steps(model, inputs, steps=3)
    encoder = model.prompt_encoder["default"].state_dict()
    assert all(not torch.equal(encoder[k], before[k]) for k in before), "every encoder tensor should have trained"
    model.save_pretrained(tmp_path)
    assert saved_shapes(tmp_path, "prompt_encoder.safetensors") == {k: tuple(v.shape) for k, v in encoder.items()}
    batch = seq_cls_batch(base)
    trained = logits(model, **batch)
    loaded_in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()  # PEFT reads the table
    assert (logits(loaded_in_peft, **batch) - trained).abs().max() <= ATOL

    resumed = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    assert isinstance(resumed.prompt_encoder["default"], PromptEncoder)
    assert {n for n, p in resumed.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
    mine, reloaded = model.state_dict(), resumed.state_dict()
    assert list(mine) == list(reloaded)
    assert all(torch.equal(mine[key], reloaded[key]) for key in mine)
    sgd_steps(model, inputs, steps=1, seed=10)
    sgd_steps(resumed, inputs, steps=1, seed=10)
    for (name, a), (_, b) in zip(model.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_peft_adapter_resumes_training_from_its_table_with_a_warning(encoder_type, tmp_path):
    base = seq_cls_model("bert")
    _, theirs = p_tuning_pair(base, encoder_type, TaskType.SEQ_CLS)
    theirs.save_pretrained(tmp_path)
    assert not (tmp_path / "prompt_encoder.safetensors").exists()
    # (PEFT itself refuses is_trainable=True for prompt learning: "Cannot set a prompt learning adapter to trainable")
    with pytest.warns(UserWarning, match="P-Tuning's output table but not the encoder"):
        resumed = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    table = resumed.prompt_encoder["default"].embedding.weight
    assert {n for n, p in resumed.named_parameters() if p.requires_grad} == {
        "prompt_encoder.default.embedding.weight",
        "base_model.classifier.modules_to_save.default.weight",
        "base_model.classifier.modules_to_save.default.bias",
    }
    assert torch.equal(table, load_file(tmp_path / "adapter_model.safetensors")["prompt_embeddings"])
    batch = seq_cls_batch(base)
    resumed.eval()
    assert (logits(resumed, **batch) - logits(theirs, **batch)).abs().max() <= ATOL
    start = table.detach().clone()
    sgd_steps(resumed, {**batch, "labels": torch.tensor([0, 2])}, steps=1)
    assert not torch.equal(resumed.prompt_encoder["default"].embedding.weight, start)
