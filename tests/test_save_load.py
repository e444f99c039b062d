"""Adapters in PEFT's file format: round trips in both directions, resuming training, safety."""

from __future__ import annotations

import copy
import json
import os
import stat

import peft
import pytest
import torch
from helpers import ATOL, logits, padded_batch, tiny_gpt2, tiny_llama
from safetensors import safe_open

from minipeft import PeftConfig, PeftModel, PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model, save_load


def minipeft_model(base, prefix_projection=False, num_virtual_tokens=4):
    torch.manual_seed(1)
    model = get_peft_model(
        copy.deepcopy(base),
        PrefixTuningConfig(
            task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens, prefix_projection=prefix_projection
        ),
    ).eval()
    with torch.no_grad():
        for param in model.prompt_encoder.parameters():
            param.mul_(0.5)
    return model


def peft_model(base, prefix_projection=False, num_virtual_tokens=4):
    torch.manual_seed(2)
    model = peft.get_peft_model(
        copy.deepcopy(base),
        peft.PrefixTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens, prefix_projection=prefix_projection
        ),
    ).eval()
    with torch.no_grad():
        for param in model.prompt_encoder.parameters():
            param.mul_(0.5)
    return model


def batch_for(model):
    input_ids, attention_mask = padded_batch()
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_minipeft_adapter_loads_in_peft_with_same_logits(tiny_model, prefix_projection, tmp_path):
    ours = minipeft_model(tiny_model, prefix_projection)
    ours.save_pretrained(tmp_path)
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(tiny_model), tmp_path).eval()
    batch = batch_for(tiny_model)
    assert (logits(ours, **batch) - logits(theirs, **batch)).abs().max() <= ATOL


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_peft_adapter_loads_in_minipeft_with_same_logits(tiny_model, prefix_projection, tmp_path):
    theirs = peft_model(tiny_model, prefix_projection)
    theirs.save_pretrained(tmp_path)
    ours = PeftModel.from_pretrained(copy.deepcopy(tiny_model), tmp_path)
    batch = batch_for(tiny_model)
    assert (logits(ours, **batch) - logits(theirs, **batch)).abs().max() <= ATOL
    assert not ours.training and not any(p.requires_grad for p in ours.parameters())
    assert not hasattr(ours.prompt_encoder["default"], "transform")  # inference mode: no MLP


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_round_trips_on_smollm2(smollm2, prefix_projection, tmp_path):
    model, tokenizer = smollm2
    batch = tokenizer(["Prefix tuning saves", "A"], return_tensors="pt", padding=True)
    ours = minipeft_model(model, prefix_projection, num_virtual_tokens=8)
    ours.save_pretrained(tmp_path / "minipeft")
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(model), tmp_path / "minipeft").eval()
    assert (logits(ours, **batch) - logits(theirs, **batch)).abs().max() <= ATOL
    source = peft_model(model, prefix_projection, num_virtual_tokens=8)
    source.save_pretrained(tmp_path / "peft")
    loaded = PeftModel.from_pretrained(copy.deepcopy(model), tmp_path / "peft")
    reloaded_by_peft = peft.PeftModel.from_pretrained(copy.deepcopy(model), tmp_path / "peft").eval()
    assert (logits(loaded, **batch) - logits(reloaded_by_peft, **batch)).abs().max() <= ATOL
    # PEFT runs its MLP on the batch-expanded input, so with prefix_projection=True its own logits move
    # by ~1e-3 with the batch size (BLAS blocking); the saved table is its batch-of-one output. Compare
    # with the source row by row, where both compute the same thing.
    for row in range(2):
        one = {k: v[row : row + 1] for k, v in batch.items()}
        assert (logits(source, **one) - logits(loaded, **one)).abs().max() <= ATOL


def test_files_match_peft_format(tmp_path):
    base = tiny_llama()
    minipeft_model(base, prefix_projection=True).save_pretrained(tmp_path / "ours")
    peft_model(base, prefix_projection=True).save_pretrained(tmp_path / "theirs")
    ours = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    theirs = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    assert set(ours) == set(theirs)
    assert ours["peft_version"] == "0.21.2"  # the PEFT format written (PEFT writes its own version)
    assert {k: v for k, v in ours.items() if k not in ("peft_version", "base_model_name_or_path")} == {
        k: v for k, v in theirs.items() if k not in ("peft_version", "base_model_name_or_path")
    }
    with safe_open(tmp_path / "ours" / "adapter_model.safetensors", "pt") as f:
        assert list(f.keys()) == ["prompt_embeddings"]
        assert tuple(f.get_tensor("prompt_embeddings").shape) == (4, 2 * 3 * 16)  # after the MLP
        assert f.metadata()["minipeft_version"]
    card = (tmp_path / "ours" / "README.md").read_text()
    assert "Prefix Tuning" in card and "PeftModel.from_pretrained" in card
    assert PeftConfig.from_pretrained(tmp_path / "theirs") == PrefixTuningConfig.from_dict(theirs)


def test_prompt_tuning_round_trip_with_peft(tmp_path):
    base = tiny_llama()
    ours = get_peft_model(copy.deepcopy(base), PromptTuningConfig(num_virtual_tokens=3)).eval()
    ours.save_pretrained(tmp_path)
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    batch = batch_for(base)
    assert (logits(ours, **batch) - logits(theirs, **batch)).abs().max() <= ATOL
    again = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert (logits(ours, **batch) - logits(again, **batch)).abs().max() <= ATOL


def train_steps(model, steps=5):
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = batch_for(model)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    losses = []
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_training_resumes_with_the_mlp(tmp_path):
    base = tiny_llama()
    model = minipeft_model(base, prefix_projection=True)
    first = train_steps(model)
    model.save_pretrained(tmp_path)
    resumed = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    assert hasattr(resumed.prompt_encoder["default"], "transform")
    assert resumed.get_nb_trainable_parameters()[0] == model.get_nb_trainable_parameters()[0]
    second = train_steps(resumed)
    assert second[0] <= first[-1] + 1e-3  # it starts where it stopped...
    assert second[-1] < second[0]  # ...and keeps learning


def test_training_resumes_from_a_peft_table_as_plain_prefix(tmp_path):
    base = tiny_llama()
    peft_model(base, prefix_projection=True).save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="plain P-Tuning v2 prefix"):
        resumed = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    assert resumed.active_peft_config.prefix_projection is False
    losses = train_steps(resumed)
    assert losses[-1] < losses[0]


def test_failed_save_leaves_earlier_adapter_intact(tmp_path, monkeypatch):
    base = tiny_llama()
    minipeft_model(base).save_pretrained(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_save_file(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half an adapter")
        raise OSError("disk full")

    monkeypatch.setattr(save_load, "save_file", broken_save_file)
    other = minipeft_model(base)
    with torch.no_grad():
        other.prompt_encoder["default"].embedding.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        other.save_pretrained(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # same files, same bytes, no temp files


def test_wrong_base_model_is_refused_and_left_untouched(tmp_path):
    minipeft_model(tiny_llama()).save_pretrained(tmp_path)
    other = tiny_gpt2()
    with pytest.raises(
        ValueError,
        match=r"was made for another base model than this GPT2LMHeadModel.*num_attention_heads=2 where the model needs num_attention_heads=4; token_dim=16 where the model needs token_dim=32",
    ):
        PeftModel.from_pretrained(other, tmp_path)
    assert all(p.requires_grad for p in other.parameters())


def test_table_with_wrong_shape_is_refused(tmp_path):
    base = tiny_llama()
    minipeft_model(base).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    config["num_virtual_tokens"] = 7
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"prompt_embeddings has shape \(4, 96\).*need \(7, 96\)"):
        PeftModel.from_pretrained(base, tmp_path)


def test_missing_truncated_and_foreign_files(tmp_path):
    base = tiny_llama()
    with pytest.raises(FileNotFoundError, match="adapter_config.json not found"):
        PeftModel.from_pretrained(base, tmp_path / "nowhere")
    minipeft_model(base).save_pretrained(tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="adapter_model.safetensors is not a readable safetensors file"):
        PeftModel.from_pretrained(base, tmp_path)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="has no weights"):
        PeftModel.from_pretrained(base, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "LORA"}))
    with pytest.raises(ValueError, match="peft_type='LORA'"):
        PeftModel.from_pretrained(base, tmp_path)
    assert all(p.requires_grad for p in base.parameters())


def test_pickled_weights_load_as_weights_only(tmp_path, capsys):
    base = tiny_llama()
    model = minipeft_model(base)
    model.save_pretrained(tmp_path, safe_serialization=False)  # PEFT's adapter_model.bin
    assert not (tmp_path / "adapter_model.safetensors").exists()
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    batch = batch_for(base)
    assert (logits(model, **batch) - logits(loaded, **batch)).abs().max() <= ATOL

    class RunsCode:  # what an unrestricted unpickle would execute
        def __reduce__(self):
            return (print, ("arbitrary code ran",))

    torch.save({"prompt_embeddings": RunsCode()}, tmp_path / "adapter_model.bin")
    capsys.readouterr()
    with pytest.raises(ValueError, match=r"holds more than tensors.*weights_only=True.*refused") as error:
        PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert "truncated or corrupt" not in str(error.value)  # it is neither: say what it is
    assert "arbitrary code ran" not in capsys.readouterr().out


def test_inference_prefix_is_computed_once(tmp_path):
    base = tiny_llama()
    model = minipeft_model(base, prefix_projection=True)
    calls = []
    model.prompt_encoder["default"].register_forward_hook(lambda *args: calls.append(1))
    batch = batch_for(base)
    with torch.no_grad():
        model(**batch)
        model.generate(**batch, max_new_tokens=3, pad_token_id=0)
        model.generate(**batch, max_new_tokens=3, pad_token_id=0)
    assert len(calls) == 1
    train_steps(model, steps=1)  # a training step changes the weights: the next call recomputes
    calls.clear()
    with torch.no_grad():
        model(**batch)
        model(**batch)
    assert len(calls) == 1


def test_saved_files_have_a_new_files_mode(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    minipeft_model(tiny_llama(), prefix_projection=True).save_pretrained(tmp_path)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert set(modes) == {"adapter_config.json", "adapter_model.safetensors", "README.md", "prefix_encoder.safetensors"}
    assert set(modes.values()) == {0o666 & ~umask}  # 0644 under the usual umask, as PEFT's files (not mkstemp's 0600)


def test_several_adapters_save_to_subfolders_and_load_back(tmp_path):
    base = tiny_llama()
    model = minipeft_model(base)
    model.add_adapter("other", PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "other" / "adapter_config.json").is_file()
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    loaded.load_adapter(tmp_path / "other", "other")
    assert loaded.active_adapter == "default" and set(loaded.peft_config) == {"default", "other"}
    batch = batch_for(base)
    for name in ("default", "other"):
        model.set_adapter(name)
        loaded.set_adapter(name)
        assert (logits(model, **batch) - logits(loaded, **batch)).abs().max() <= ATOL
    model.save_pretrained(tmp_path / "only", selected_adapters=["other"])
    assert not (tmp_path / "only" / "adapter_config.json").exists() and (tmp_path / "only" / "other").is_dir()


def test_loading_asks_the_model_for_its_cache_layout_once(tmp_path):
    # the probe is a one-token forward of the whole base model: once per wrapped model, not once per read
    base = tiny_llama()
    minipeft_model(base).save_pretrained(tmp_path)
    probes = []
    loaded_base = copy.deepcopy(base)
    loaded_base.register_forward_hook(lambda *args: probes.append(1))
    loaded = PeftModel.from_pretrained(loaded_base, tmp_path)
    assert len(probes) == 1
    loaded.load_adapter(tmp_path, "again")
    assert len(probes) == 1  # the wrapper already holds the layout
