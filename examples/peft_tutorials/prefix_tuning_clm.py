"""PEFT's tutorial examples/causal_language_modeling/peft_prefix_tuning_clm.ipynb, as a script.

Cell by cell as in huggingface/peft (main, 2026-08), with `from peft` switched by PEFT_LIBRARY
("minipeft", the default, or "peft"); every line below the switch is the same for both libraries.
Each notebook cell is marked `# --- cell N`; a bare expression the notebook displays is printed.

Substitutions (marked SUBSTITUTION), because this machine has no Hub and 2 CPU cores:
- model: bigscience/bloomz-560m -> the embedded SmolLM2-135M-Instruct (a local transformers folder,
  so AutoModelForCausalLM / AutoTokenizer.from_pretrained load it as the tutorial does);
  generate's eos_token_id=3 (bloomz's) -> tokenizer.eos_token_id (SmolLM2's <|im_end|>);
- data: load_dataset("parquet", "hf://datasets/ought/raft@.../twitter_complaints/...") -> the
  project's complaints data in RAFT's layout (offline_substitutes.raft_twitter_complaints);
- sizes: 16 training posts (RAFT has 50), max_length 48 (every prompt + label fits), 3 epochs
  (the tutorial: 50); set_seed(0) added (the notebook sets no seed);
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
    from peft import PeftType, PrefixTuningConfig, TaskType, get_peft_config, get_peft_model  # noqa: F401
else:
    from minipeft import PeftType, PrefixTuningConfig, TaskType, get_peft_config, get_peft_model  # noqa: F401

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    default_data_collator,
    get_linear_schedule_with_warmup,
    set_seed,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from offline_substitutes import raft_twitter_complaints, smollm2_path  # noqa: E402

START = time.perf_counter()
torch.set_printoptions(precision=int(os.environ.get("PRINT_PRECISION", "4")))
RUN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runs", LIBRARY)
os.makedirs(RUN_DIR, exist_ok=True)
os.chdir(RUN_DIR)
set_seed(0)  # SUBSTITUTION: a fixed seed, so that both libraries start alike

# --- cell 0
device = "cpu"  # SUBSTITUTION: the tutorial asks torch.accelerator (None on a CPU-only torch)
model_name_or_path = smollm2_path()  # SUBSTITUTION: "bigscience/bloomz-560m"
tokenizer_name_or_path = model_name_or_path
peft_config = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=30)

dataset_name = "twitter_complaints"
checkpoint_name = f"{dataset_name}_{model_name_or_path}_{peft_config.peft_type}_{peft_config.task_type}_v1.pt".replace(
    "/", "_"
)
text_column = "Tweet text"
label_column = "text_label"
max_length = 48  # SUBSTITUTION: 64
lr = 3e-2
num_epochs = 3  # SUBSTITUTION: 50
batch_size = 8

# --- cell 1
dataset = raft_twitter_complaints()  # SUBSTITUTION: load_dataset("parquet", data_files={... ought/raft ...})
dataset["train"] = dataset["train"].select(range(16))  # SUBSTITUTION (size): RAFT's train split has 50 posts

classes = [k.replace("_", " ") for k in dataset["train"].features["Label"].names]
print(classes)
dataset = dataset.map(
    lambda x: {"text_label": [classes[label] for label in x["Label"]]},
    batched=True,
    num_proc=1,
)
print(dataset)
print(dataset["train"][0])

# --- cell 2
# data preprocessing
tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
if tokenizer.pad_token_id is None:
    tokenizer.pad_token_id = tokenizer.eos_token_id
target_max_length = max([len(tokenizer(class_label)["input_ids"]) for class_label in classes])
print(target_max_length)


def preprocess_function(examples):
    batch_size = len(examples[text_column])
    inputs = [f"{text_column} : {x} Label : " for x in examples[text_column]]
    targets = [str(x) for x in examples[label_column]]
    model_inputs = tokenizer(inputs)
    labels = tokenizer(targets, add_special_tokens=False)  # don't add bos token because we concatenate with inputs
    for i in range(batch_size):
        sample_input_ids = model_inputs["input_ids"][i]
        label_input_ids = labels["input_ids"][i] + [tokenizer.eos_token_id]
        # print(i, sample_input_ids, label_input_ids)
        model_inputs["input_ids"][i] = sample_input_ids + label_input_ids
        labels["input_ids"][i] = [-100] * len(sample_input_ids) + label_input_ids
        model_inputs["attention_mask"][i] = [1] * len(model_inputs["input_ids"][i])
    # print(model_inputs)
    for i in range(batch_size):
        sample_input_ids = model_inputs["input_ids"][i]
        label_input_ids = labels["input_ids"][i]
        model_inputs["input_ids"][i] = [tokenizer.pad_token_id] * (
            max_length - len(sample_input_ids)
        ) + sample_input_ids
        model_inputs["attention_mask"][i] = [0] * (max_length - len(sample_input_ids)) + model_inputs["attention_mask"][
            i
        ]
        labels["input_ids"][i] = [-100] * (max_length - len(sample_input_ids)) + label_input_ids
        model_inputs["input_ids"][i] = torch.tensor(model_inputs["input_ids"][i][:max_length])
        model_inputs["attention_mask"][i] = torch.tensor(model_inputs["attention_mask"][i][:max_length])
        labels["input_ids"][i] = torch.tensor(labels["input_ids"][i][:max_length])
    model_inputs["labels"] = labels["input_ids"]
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
eval_dataset = processed_datasets["train"]


train_dataloader = DataLoader(
    train_dataset, shuffle=True, collate_fn=default_data_collator, batch_size=batch_size, pin_memory=True
)
eval_dataloader = DataLoader(eval_dataset, collate_fn=default_data_collator, batch_size=batch_size, pin_memory=True)


# --- cell 3
def test_preprocess_function(examples):
    batch_size = len(examples[text_column])
    inputs = [f"{text_column} : {x} Label : " for x in examples[text_column]]
    model_inputs = tokenizer(inputs)
    # print(model_inputs)
    for i in range(batch_size):
        sample_input_ids = model_inputs["input_ids"][i]
        model_inputs["input_ids"][i] = [tokenizer.pad_token_id] * (
            max_length - len(sample_input_ids)
        ) + sample_input_ids
        model_inputs["attention_mask"][i] = [0] * (max_length - len(sample_input_ids)) + model_inputs["attention_mask"][
            i
        ]
        model_inputs["input_ids"][i] = torch.tensor(model_inputs["input_ids"][i][:max_length])
        model_inputs["attention_mask"][i] = torch.tensor(model_inputs["attention_mask"][i][:max_length])
    return model_inputs


test_dataset = dataset["test"].map(
    test_preprocess_function,
    batched=True,
    num_proc=1,
    remove_columns=dataset["train"].column_names,
    load_from_cache_file=False,
    desc="Running tokenizer on dataset",
)

test_dataloader = DataLoader(test_dataset, collate_fn=default_data_collator, batch_size=batch_size, pin_memory=True)
print(next(iter(test_dataloader)))

# --- cell 4
print(next(iter(train_dataloader)))

# --- cell 5
print(len(test_dataloader))

# --- cell 6
print(next(iter(test_dataloader)))

# --- cell 7
# creating model
model = AutoModelForCausalLM.from_pretrained(model_name_or_path)
model = get_peft_model(model, peft_config)
model.print_trainable_parameters()

# --- cell 8
print(model)

# --- cell 9
print(model.peft_config)

# --- cell 10
# model
# optimizer and lr scheduler
optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
lr_scheduler = get_linear_schedule_with_warmup(
    optimizer=optimizer,
    num_warmup_steps=0,
    num_training_steps=(len(train_dataloader) * num_epochs),
)

# --- cell 11
# training and evaluation
model = model.to(device)

for epoch in range(num_epochs):
    model.train()
    total_loss = 0
    for step, batch in enumerate(tqdm(train_dataloader)):
        batch = {k: v.to(device) for k, v in batch.items()}
        #         print(batch)
        #         print(batch["input_ids"].shape)
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

# --- cell 12
model.eval()
i = 16
inputs = tokenizer(f"{text_column} : {dataset['test'][i]['Tweet text']} Label : ", return_tensors="pt")
print(dataset["test"][i]["Tweet text"])
print(inputs)

with torch.no_grad():
    inputs = {k: v.to(device) for k, v in inputs.items()}
    outputs = model.generate(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        max_new_tokens=10,
        eos_token_id=tokenizer.eos_token_id,  # SUBSTITUTION: 3 (bloomz's eos)
    )
    print(outputs)
    print(tokenizer.batch_decode(outputs.detach().cpu().numpy(), skip_special_tokens=True))

# --- cell 14
# saving model
peft_model_id = f"{dataset_name}_{model_name_or_path}_{peft_config.peft_type}_{peft_config.task_type}".replace("/", "_")
model.save_pretrained(peft_model_id)

# --- cell 15
ckpt = f"{peft_model_id}/adapter_model.safetensors"
print(f"{os.path.getsize(ckpt) / 2**20:.1f}M\t{ckpt}")  # SUBSTITUTION: !du -h $ckpt

# --- cell 16
if LIBRARY == "peft":
    from peft import PeftConfig, PeftModel
else:
    from minipeft import PeftConfig, PeftModel

peft_model_id = f"{dataset_name}_{model_name_or_path}_{peft_config.peft_type}_{peft_config.task_type}".replace("/", "_")

config = PeftConfig.from_pretrained(peft_model_id)
model = AutoModelForCausalLM.from_pretrained(config.base_model_name_or_path)
model = PeftModel.from_pretrained(model, peft_model_id)

# --- cell 17
model.to(device)
model.eval()
i = 4
inputs = tokenizer(f"{text_column} : {dataset['test'][i]['Tweet text']} Label : ", return_tensors="pt")
print(dataset["test"][i]["Tweet text"])
print(inputs)

with torch.no_grad():
    inputs = {k: v.to(device) for k, v in inputs.items()}
    outputs = model.generate(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        max_new_tokens=10,
        eos_token_id=tokenizer.eos_token_id,  # SUBSTITUTION: 3 (bloomz's eos)
    )
    print(outputs)
    print(tokenizer.batch_decode(outputs.detach().cpu().numpy(), skip_special_tokens=True))

print(f"[time] {LIBRARY}: {time.perf_counter() - START:.1f} s")
