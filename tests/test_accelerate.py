"""accelerate, the way PEFT's `examples/sequence_classification/peft_no_lora_accelerate.py` saves: the unwrapped
model's `save_pretrained(folder, state_dict=accelerator.get_state_dict(model))` writes a loadable adapter folder."""

import torch
from accelerate import Accelerator
from helpers import seq_cls_batch, seq_cls_model

from minipeft import PeftModel, PrefixTuningConfig, get_peft_model


def test_accelerate_saves_a_loadable_adapter_with_its_head(tmp_path):
    torch.manual_seed(0)
    model = get_peft_model(seq_cls_model("bert"), PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4))
    batch = seq_cls_batch(model.get_base_model())
    labels = torch.tensor([0, 1])
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model, optimizer = accelerator.prepare(model, optimizer)
    for _ in range(3):
        loss = model(**batch, labels=labels).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(
        tmp_path, is_main_process=accelerator.is_main_process, state_dict=accelerator.get_state_dict(model)
    )
    assert sum(f.stat().st_size for f in tmp_path.iterdir()) < 100_000  # the adapter and the head only
    torch.manual_seed(0)
    loaded = PeftModel.from_pretrained(seq_cls_model("bert"), tmp_path)
    with torch.no_grad():
        expected = unwrapped.eval()(**batch).logits
        assert torch.allclose(loaded(**batch).logits, expected, atol=1e-6)
