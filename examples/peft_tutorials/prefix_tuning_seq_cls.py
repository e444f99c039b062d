"""PEFT's tutorial examples/sequence_classification/prefix_tuning.ipynb, as a script.

Cell by cell as in huggingface/peft (main, 2026-08), with `from peft` switched by PEFT_LIBRARY
("minipeft", the default, or "peft"); every line below the switch is the same for both libraries.
Each notebook cell is marked `# --- cell N`; a bare expression the notebook displays is printed.

Substitutions (marked SUBSTITUTION), because this machine has no Hub and 2 CPU cores:
- model: roberta-large -> the embedded all-MiniLM-L6-v2 (a BERT folder; its classification head is
  new, drawn by from_pretrained from the seeded global generator, as roberta-large's is);
- data: load_dataset("glue", "mrpc") (sentence pairs, "label" 0/1) -> the project's complaints data
  in RAFT's layout (offline_substitutes.raft_twitter_complaints), one text per example ("Tweet text"),
  "label" = RAFT's Label - 1 (0 complaint, 1 no complaint); train on its train split (480 posts),
  evaluate on its validation split (96);
- metric: evaluate.load("glue", "mrpc") (a Hub download) -> offline_substitutes.GlueMrpcMetric
  (the same accuracy and F1 of class 1);
- Hub: model.push_to_hub("smangrul/roberta-large-peft-prefix-tuning") and loading it back by that id
  -> model.save_pretrained to a local folder and loading it back from that folder;
- sizes: 3 epochs (the tutorial: 20); set_seed(0) added (the notebook imports set_seed but never calls it);
- device: "cpu" (torch.accelerator.current_accelerator() is None on a CPU-only torch).
"""

# The tutorial's code is kept as written, lint findings included (unused loop variables, ...).
# ruff: noqa: B007, B009, F841

import os
import sys
import time

LIBRARY = os.environ.get("PEFT_LIBRARY", "minipeft")
if LIBRARY == "peft":
    from peft import (  # noqa: F401
        PeftType,
        PrefixTuningConfig,
        PromptEncoderConfig,
        get_peft_config,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )
else:
    from minipeft import (  # noqa: F401
        PeftType,
        PrefixTuningConfig,
        PromptEncoderConfig,
        get_peft_config,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )

# --- cell 0
import argparse  # noqa: E402, F401

import torch  # noqa: E402
from torch.optim import AdamW  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup, set_seed  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from offline_substitutes import GlueMrpcMetric, minilm_path, raft_twitter_complaints  # noqa: E402

START = time.perf_counter()
RUN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runs", LIBRARY)
os.makedirs(RUN_DIR, exist_ok=True)
os.chdir(RUN_DIR)
set_seed(0)  # SUBSTITUTION: a fixed seed, so that both libraries start alike

# --- cell 1
batch_size = 32
model_name_or_path = minilm_path()  # SUBSTITUTION: "roberta-large"
task = "mrpc"
peft_type = PeftType.PREFIX_TUNING
device = "cpu"  # SUBSTITUTION: the tutorial asks torch.accelerator (None on a CPU-only torch)
num_epochs = 3  # SUBSTITUTION: 20

# --- cell 2
peft_config = PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=20)
lr = 1e-2

# --- cell 3
if any(k in model_name_or_path for k in ("gpt", "opt", "bloom")):
    padding_side = "left"
else:
    padding_side = "right"

tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, padding_side=padding_side)
if getattr(tokenizer, "pad_token_id") is None:
    tokenizer.pad_token_id = tokenizer.eos_token_id

datasets = raft_twitter_complaints()  # SUBSTITUTION: load_dataset("glue", task)
datasets = datasets.map(lambda x: {"label": [label - 1 for label in x["Label"]]}, batched=True)  # SUBSTITUTION
metric = GlueMrpcMetric()  # SUBSTITUTION: evaluate.load("glue", task)


def tokenize_function(examples):
    # max_length=None => use the model max length (it's actually the default)
    outputs = tokenizer(examples["Tweet text"], truncation=True, max_length=None)  # SUBSTITUTION: sentence1, sentence2
    return outputs


tokenized_datasets = datasets.map(
    tokenize_function,
    batched=True,
    remove_columns=["ID", "Tweet text", "Label"],  # SUBSTITUTION: ["idx", "sentence1", "sentence2"]
)

# We also rename the 'label' column to 'labels' which is the expected name for labels by the models of the
# transformers library
tokenized_datasets = tokenized_datasets.rename_column("label", "labels")


def collate_fn(examples):
    return tokenizer.pad(examples, padding="longest", return_tensors="pt")


# Instantiate dataloaders.
train_dataloader = DataLoader(tokenized_datasets["train"], shuffle=True, collate_fn=collate_fn, batch_size=batch_size)
eval_dataloader = DataLoader(
    tokenized_datasets["validation"], shuffle=False, collate_fn=collate_fn, batch_size=batch_size
)

# --- cell 4
model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, return_dict=True)
model = get_peft_model(model, peft_config)
model.print_trainable_parameters()
print(model)

# --- cell 5
optimizer = AdamW(params=model.parameters(), lr=lr)

# Instantiate scheduler
lr_scheduler = get_linear_schedule_with_warmup(
    optimizer=optimizer,
    num_warmup_steps=0.06 * (len(train_dataloader) * num_epochs),
    num_training_steps=(len(train_dataloader) * num_epochs),
)

# --- cell 6
model.to(device)
for epoch in range(num_epochs):
    model.train()
    for step, batch in enumerate(tqdm(train_dataloader)):
        batch.to(device)
        outputs = model(**batch)
        loss = outputs.loss
        loss.backward()
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()

    model.eval()
    for step, batch in enumerate(tqdm(eval_dataloader)):
        batch.to(device)
        with torch.no_grad():
            outputs = model(**batch)
        predictions = outputs.logits.argmax(dim=-1)
        predictions, references = predictions, batch["labels"]
        metric.add_batch(
            predictions=predictions,
            references=references,
        )

    eval_metric = metric.compute()
    print(f"epoch {epoch}:", eval_metric)

# --- cell 8 (Share adapters on the Hub)
peft_model_id = "roberta-large-peft-prefix-tuning"  # SUBSTITUTION: a local folder, not the Hub
model.save_pretrained(peft_model_id)  # SUBSTITUTION: model.push_to_hub(peft_model_id, use_auth_token=True)

# --- cell 10 (Load adapters from the Hub)
if LIBRARY == "peft":
    from peft import PeftConfig, PeftModel
else:
    from minipeft import PeftConfig, PeftModel
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402, F401

peft_model_id = "roberta-large-peft-prefix-tuning"  # SUBSTITUTION: "smangrul/roberta-large-peft-prefix-tuning"
config = PeftConfig.from_pretrained(peft_model_id)
inference_model = AutoModelForSequenceClassification.from_pretrained(config.base_model_name_or_path)
tokenizer = AutoTokenizer.from_pretrained(config.base_model_name_or_path)

# Load the Lora model
inference_model = PeftModel.from_pretrained(inference_model, peft_model_id)

inference_model.to(device)
inference_model.eval()
for step, batch in enumerate(tqdm(eval_dataloader)):
    batch.to(device)
    with torch.no_grad():
        outputs = inference_model(**batch)
    predictions = outputs.logits.argmax(dim=-1)
    predictions, references = predictions, batch["labels"]
    metric.add_batch(
        predictions=predictions,
        references=references,
    )

eval_metric = metric.compute()
print(eval_metric)

print(f"[time] {LIBRARY}: {time.perf_counter() - START:.1f} s")
