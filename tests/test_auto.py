"""AutoPeftModel...: the adapter's folder alone brings back its base model and the adapter; get_peft_config."""

import pytest
import torch
from helpers import ATOL, padded_batch, tiny_llama

from minipeft import (
    AutoPeftModel,
    AutoPeftModelForCausalLM,
    AutoPeftModelForSequenceClassification,
    PeftModelForCausalLM,
    PromptTuningConfig,
    get_peft_config,
    get_peft_model,
)


def test_auto_class_loads_base_model_and_adapter(tmp_path):
    torch.manual_seed(0)
    tiny_llama().save_pretrained(tmp_path / "base")
    base = type(tiny_llama()).from_pretrained(tmp_path / "base")
    model = get_peft_model(base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)).eval()
    assert model.active_peft_config.base_model_name_or_path == str(tmp_path / "base")
    model.save_pretrained(tmp_path / "adapter")
    loaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter")
    assert isinstance(loaded, PeftModelForCausalLM)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        diff = (
            loaded(input_ids=input_ids, attention_mask=attention_mask).logits
            - model(input_ids=input_ids, attention_mask=attention_mask).logits
        )
    assert diff.abs().max() <= ATOL
    with pytest.raises(ValueError, match="Expected target PEFT class: PeftModelForCausalLM"):
        AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "adapter")
    with pytest.raises(ValueError, match="Cannot use `AutoPeftModel` with a task type"):
        AutoPeftModel.from_pretrained(tmp_path / "adapter")


def test_get_peft_config_builds_the_named_class():
    config = get_peft_config({"peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 20})
    assert type(config).__name__ == "PrefixTuningConfig" and config.num_virtual_tokens == 20
    with pytest.raises(ValueError, match="peft_type='LORA' is not a method minipeft implements"):
        get_peft_config({"peft_type": "LORA"})
