"""PEFT's tutorial examples/conditional_generation/peft_prefix_tuning_seq2seq.ipynb, as a script.

Cell by cell as in huggingface/peft (main, 2026-08), with `from peft` switched by PEFT_LIBRARY
("minipeft", the default, or "peft"); every line below the switch is the same for both libraries.
Each notebook cell is marked `# --- cell N`; a bare expression the notebook displays is printed.

Substitutions (marked SUBSTITUTION), because this machine has no Hub and 2 CPU cores:
- model: t5-large -> a tiny T5 (2 + 2 layers, d_model 64, random weights from seed 0) written by
  offline_substitutes.tiny_t5_path, with a word-level tokenizer trained on the posts and labels
  (T5's own SentencePiece model is on the Hub); saved as a local folder, so
  AutoModelForSeq2SeqLM / AutoTokenizer.from_pretrained load it as the tutorial does. Its weights are
  random, so the accuracy says little about prefix tuning: the point is that both libraries agree;
- data: the tutorial's financial sentiment set (load_dataset("zeroshot/twitter-financial-news-sentiment"),
  earlier versions financial_phrasebank) -> the project's complaints data in RAFT's layout, as a
  text-to-text task: post -> "complaint" / "no complaint" (its train split, split 90/10 as the tutorial does);
  text_column "text" -> "Tweet text", label "label" -> "Label";
- sizes: max_length 128 -> 48 (the posts are short); target max_length 2 -> 3 ("no complaint" is two
  words + </s> here; t5-large's labels are one token); example i=107 -> 7 (48 validation posts);
  set_seed(0) added (the notebook sets no seed);
- device: "cpu" (torch.accelerator.current_accelerator() is None on a CPU-only torch);
- `!du -h $ckpt` -> the file size printed in Python; the output folders go under _runs/<library>/.
"""

# The tutorial's code is kept as written, lint findings included (unused loop variables, ...).
# ruff: noqa: B007, B009, F841

import os
import sys
import time

LIBRARY = os.environ.get("PEFT_LIBRARY", "minipeft")
if LIBRARY == "peft":
    from peft import PrefixTuningConfig, TaskType, get_peft_config, get_peft_model, get_peft_model_state_dict  # noqa: F401
else:
    from minipeft import (  # noqa: F401
        PrefixTuningConfig,
        TaskType,
        get_peft_config,
        get_peft_model,
        get_peft_model_state_dict,
    )

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    default_data_collator,
    get_linear_schedule_with_warmup,
    set_seed,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from offline_substitutes import raft_twitter_complaints, tiny_t5_path  # noqa: E402

START = time.perf_counter()
torch.set_printoptions(precision=int(os.environ.get("PRINT_PRECISION", "4")))
RUN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runs", LIBRARY)
os.makedirs(RUN_DIR, exist_ok=True)
os.chdir(RUN_DIR)

# --- cell 0
os.environ["TOKENIZERS_PARALLELISM"] = "false"

device = "cpu"  # SUBSTITUTION: the tutorial asks torch.accelerator (None on a CPU-only torch)
# SUBSTITUTION: "t5-large" -> a tiny T5 and a word-level tokenizer trained on the posts and the label names
_complaints = raft_twitter_complaints()
model_name_or_path = tiny_t5_path(
    "tiny-t5", list(_complaints["train"]["Tweet text"]) + _complaints["train"].features["Label"].names
)
tokenizer_name_or_path = model_name_or_path
set_seed(0)  # SUBSTITUTION: a fixed seed, so that both libraries start alike

text_column = "Tweet text"  # SUBSTITUTION: "text"
label_column = "text_label"
max_length = 48  # SUBSTITUTION: 128
lr = 1e-2
num_epochs = 5
batch_size = 8

# --- cell 1
# creating model
peft_config = PrefixTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, inference_mode=False, num_virtual_tokens=20)

model = AutoModelForSeq2SeqLM.from_pretrained(model_name_or_path)
model = get_peft_model(model, peft_config)
model.print_trainable_parameters()
print(model)

# --- cell 2
# loading dataset
dataset = _complaints  # SUBSTITUTION: load_dataset("zeroshot/twitter-financial-news-sentiment")
dataset = dataset["train"].train_test_split(test_size=0.1)
dataset["validation"] = dataset["test"]
del dataset["test"]

if hasattr(dataset["train"].features["Label"], "names"):  # SUBSTITUTION: the column "label" is "Label"
    classes = dataset["train"].features["Label"].names
else:
    classes = ["Bearish", "Bullish", "Neutral"]
dataset = dataset.map(
    lambda x: {"text_label": [classes[label] for label in x["Label"]]},
    batched=True,
    num_proc=1,
)

print(dataset["train"][0])

# --- cell 3
# data preprocessing
tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)


def preprocess_function(examples):
    inputs = examples[text_column]
    targets = examples[label_column]
    model_inputs = tokenizer(inputs, max_length=max_length, padding="max_length", truncation=True, return_tensors="pt")
    labels = tokenizer(targets, max_length=3, padding="max_length", truncation=True, return_tensors="pt")  # SUBST.: 2
    labels = labels["input_ids"]
    labels[labels == tokenizer.pad_token_id] = -100
    model_inputs["labels"] = labels
    return model_inputs


processed_datasets = dataset.map(
    preprocess_function,
    batched=True,
    num_proc=1,
    remove_columns=dataset["train"].column_names,
    load_from_cache_file=False,
    desc="Running tokenizer on dataset",
)

train_dataset = processed_datasets["train"]
eval_dataset = processed_datasets["validation"]

train_dataloader = DataLoader(
    train_dataset, shuffle=True, collate_fn=default_data_collator, batch_size=batch_size, pin_memory=True
)
eval_dataloader = DataLoader(eval_dataset, collate_fn=default_data_collator, batch_size=batch_size, pin_memory=True)

# --- cell 4
# optimizer and lr scheduler
optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
lr_scheduler = get_linear_schedule_with_warmup(
    optimizer=optimizer,
    num_warmup_steps=0,
    num_training_steps=(len(train_dataloader) * num_epochs),
)

# --- cell 5
# training and evaluation
model = model.to(device)

for epoch in range(num_epochs):
    model.train()
    total_loss = 0
    for step, batch in enumerate(tqdm(train_dataloader)):
        batch = {k: v.to(device) for k, v in batch.items()}
        outputs = model(**batch)
        loss = outputs.loss
        total_loss += loss.detach().float()
        loss.backward()
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()

    model.eval()
    eval_loss = 0
    eval_preds = []
    for step, batch in enumerate(tqdm(eval_dataloader)):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            outputs = model(**batch)
        loss = outputs.loss
        eval_loss += loss.detach().float()
        eval_preds.extend(
            tokenizer.batch_decode(torch.argmax(outputs.logits, -1).detach().cpu().numpy(), skip_special_tokens=True)
        )

    eval_epoch_loss = eval_loss / len(eval_dataloader)
    eval_ppl = torch.exp(eval_epoch_loss)
    train_epoch_loss = total_loss / len(train_dataloader)
    train_ppl = torch.exp(train_epoch_loss)
    print(f"{epoch=}: {train_ppl=} {train_epoch_loss=} {eval_ppl=} {eval_epoch_loss=}")

# --- cell 6
# print accuracy
correct = 0
total = 0
for pred, true in zip(eval_preds, dataset["validation"]["text_label"]):
    if pred.strip() == true.strip():
        correct += 1
    total += 1
accuracy = correct / total * 100
print(f"{accuracy=} % on the evaluation dataset")
print(f"{eval_preds[:10]=}")
print(f"{dataset['validation']['text_label'][:10]=}")

# --- cell 7
# saving model
peft_model_id = f"{model_name_or_path}_{peft_config.peft_type}_{peft_config.task_type}"
model.save_pretrained(peft_model_id)

# --- cell 8
ckpt = f"{peft_model_id}/adapter_model.safetensors"
print(f"{os.path.getsize(ckpt) / 2**10:.0f}K\t{ckpt}")  # SUBSTITUTION: !du -h $ckpt

# --- cell 9
if LIBRARY == "peft":
    from peft import PeftConfig, PeftModel
else:
    from minipeft import PeftConfig, PeftModel

peft_model_id = f"{model_name_or_path}_{peft_config.peft_type}_{peft_config.task_type}"

config = PeftConfig.from_pretrained(peft_model_id)
model = AutoModelForSeq2SeqLM.from_pretrained(config.base_model_name_or_path)
model = PeftModel.from_pretrained(model, peft_model_id)

# --- cell 10
model.eval()
i = 7  # SUBSTITUTION: 107 (the validation split has 48 posts here)
inputs = tokenizer(dataset["validation"][text_column][i], return_tensors="pt")
print(dataset["validation"][text_column][i])
print(inputs)

with torch.no_grad():
    outputs = model.generate(input_ids=inputs["input_ids"], max_new_tokens=10)
    print(outputs)
    print(tokenizer.batch_decode(outputs.detach().cpu().numpy(), skip_special_tokens=True))

print(f"[time] {LIBRARY}: {time.perf_counter() - START:.1f} s")
