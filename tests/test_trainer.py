"""transformers' Trainer trains a minipeft model unchanged ("the rest of training needs no change")."""

import torch
from helpers import tiny_gpt2
from transformers import Trainer, TrainingArguments

from minipeft import PrefixTuningConfig, get_peft_model


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
