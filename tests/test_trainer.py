"""transformers' Trainer trains a minipeft model unchanged ("the rest of training needs no change")."""

import torch
from helpers import tiny_gpt2
from safetensors.torch import load_file
from transformers import Trainer, TrainingArguments

from minipeft import PeftModel, PrefixTuningConfig, get_peft_model


def test_trainer_trains_only_the_prefix(tmp_path):
    torch.manual_seed(0)
    base = tiny_gpt2(n_layer=2, n_positions=64)
    model = get_peft_model(base, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    table = model.prompt_encoder["default"].embedding.weight
    before = table.detach().clone()
    frozen = {name: p.detach().clone() for name, p in base.named_parameters()}
    rows = [
        {"input_ids": ids, "attention_mask": torch.ones(8, dtype=torch.long), "labels": ids}
        for ids in torch.randint(0, 128, (8, 8))
    ]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    result = trainer.train()
    assert result.global_step == 3
    optimized = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert len(optimized) == 1 and optimized[0] is table  # only the prefix table is handed to the optimizer
    assert not torch.equal(table.detach(), before)
    assert all(torch.equal(p, frozen[name]) for name, p in base.named_parameters())


def trainer_for(model, tmp_path, **overrides):
    rows = [
        {"input_ids": ids, "attention_mask": torch.ones(8, dtype=torch.long), "labels": ids}
        for ids in torch.randint(0, 128, (8, 8), generator=torch.Generator().manual_seed(0))
    ]
    args = dict(
        output_dir=str(tmp_path),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="steps",
        save_steps=2,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return Trainer(model=model, args=TrainingArguments(**{**args, **overrides}), train_dataset=rows)


def wrapped_gpt2():  # GPT-2 ties lm_head to the input embedding: saving its whole state dict fails
    torch.manual_seed(0)
    return get_peft_model(tiny_gpt2(n_layer=2), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))


def test_trainer_saves_adapter_folders_never_the_base_model(tmp_path):
    model = wrapped_gpt2()
    trainer = trainer_for(model, tmp_path / "run")
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    for folder in (tmp_path / "run" / "checkpoint-2", tmp_path / "run" / "checkpoint-4", tmp_path / "final"):
        assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
        resume = load_file(folder / "model.safetensors")  # Trainer's resume file: the adapter's tensors only
        assert set(resume) == {"prompt_encoder.default.embedding.weight"}
        assert sum(f.stat().st_size for f in folder.iterdir()) < 100_000  # the base model alone is ~1 MB here
    loaded = PeftModel.from_pretrained(tiny_gpt2(n_layer=2), tmp_path / "final")
    base_state = {k: v for k, v in model.get_base_model().state_dict().items()}
    loaded.get_base_model().load_state_dict(base_state)
    ids = torch.randint(0, 128, (2, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model.eval()(input_ids=ids).logits, loaded(input_ids=ids).logits, atol=1e-6)


def test_trainer_resumes_from_a_checkpoint(tmp_path):
    uninterrupted = wrapped_gpt2()
    trainer_for(uninterrupted, tmp_path).train()  # 4 steps, checkpoints at 2 and 4
    resumed = wrapped_gpt2()
    trainer_for(resumed, tmp_path / "resumed").train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    at_two = load_file(tmp_path / "checkpoint-2" / "model.safetensors")["prompt_encoder.default.embedding.weight"]
    table = resumed.prompt_encoder["default"].embedding.weight
    assert not torch.allclose(table, wrapped_gpt2().prompt_encoder["default"].embedding.weight)
    assert not torch.allclose(table, at_two)  # it trained on from step 2...
    assert torch.allclose(table, uninterrupted.prompt_encoder["default"].embedding.weight, atol=1e-6)  # ...to 4
