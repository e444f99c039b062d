"""Chapter 7's prefix, trained with data parallelism: one process per GPU (or per CPU process).

    accelerate launch --num_processes 4 examples/train_accelerate.py               # 4 GPUs, one machine
    torchrun --nproc_per_node 2 examples/train_accelerate.py --steps 3 --output out  # 2 CPU processes (gloo)

Every process holds the whole frozen model and its own copy of the prefix. At each step each process
takes its share of the batch (``--batch-size`` is the global batch, split across processes), computes
the label loss (``minipeft.label_loss``), and accelerate's DistributedDataParallel wrapper averages
the prefix's gradients across processes (an all-reduce: NCCL on GPUs, gloo on CPUs) before every
process applies the same AdamW update. The prefixes therefore stay identical on every process, which
``tests/test_distributed.py`` checks from the tables each process writes with ``--output``.

After DDP's one broadcast of rank 0's weights at start-up, only the prefix's 230,400 gradients
(20 virtual tokens on SmolLM2-135M) cross between processes at each step.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.utils import set_seed  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import get_linear_schedule_with_warmup  # noqa: E402

from minipeft import (  # noqa: E402
    PrefixTuningConfig,
    evaluate_loss,
    get_peft_model,
    label_collator,
    label_loss,
    load_base_model,
    load_complaints,
    tokenize_prompts,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a Hub id or folder (default: the embedded SmolLM2)")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=8, help="examples per step over all processes")
    parser.add_argument("--learning-rate", type=float, default=3e-2)
    parser.add_argument("--num-virtual-tokens", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="save the adapter (and each process's table)")
    args = parser.parse_args()

    # Without a GPU, accelerate runs data-parallel on CPU processes only when told `cpu=True` (gloo).
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if args.batch_size % accelerator.num_processes:
        parser.error(f"--batch-size {args.batch_size} does not split over {accelerator.num_processes} processes")
    set_seed(args.seed)  # the same initial prefix everywhere (DDP also broadcasts rank 0's at prepare)
    model, tokenizer = load_base_model(args.model) if args.model else load_base_model()
    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=args.num_virtual_tokens)
    model = get_peft_model(model, config)
    with torch.no_grad():  # chapter 7's start: a prefix on the scale of the model's own activations
        torch.nn.init.normal_(model.prompt_encoder["default"].embedding.weight, std=0.02)
    if accelerator.is_main_process:
        model.print_trainable_parameters()

    with accelerator.main_process_first():  # the first process writes datasets' cache, the others read it
        data = tokenize_prompts(load_complaints(), tokenizer)
    loader = DataLoader(
        data["train"],
        batch_size=args.batch_size // accelerator.num_processes,  # each process's share
        shuffle=True,
        collate_fn=label_collator(tokenizer),
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=args.steps)
    model, optimizer, loader, schedule = accelerator.prepare(model, optimizer, loader, schedule)

    if args.output is not None:  # the starting prefix, to show that training moved it
        args.output.mkdir(parents=True, exist_ok=True)
        initial = accelerator.unwrap_model(model).prompt_table()[0].detach().contiguous()  # (P, width)
        save_file(
            {"prompt_embeddings": initial}, str(args.output / f"initial_rank{accelerator.process_index}.safetensors")
        )

    model.train()
    step = 0
    while step < args.steps:
        for batch in loader:
            loss = label_loss(model, batch)  # this process's share of the batch
            accelerator.backward(loss)  # gradients averaged across processes here
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if accelerator.is_main_process and (step % 10 == 0 or step == args.steps):
                print(f"step {step}/{args.steps}  loss {loss.item():.3f}", flush=True)
            if step == args.steps:
                break

    peft_model = accelerator.unwrap_model(model)
    peft_model.eval()
    if accelerator.is_main_process:
        validation_loss = evaluate_loss(peft_model, tokenizer, data["validation"], batch_size=32)
        print(f"validation loss {validation_loss:.3f}", flush=True)
    if args.output is not None:
        table = peft_model.prompt_table()[0].detach().contiguous()  # (num_virtual_tokens, 2 * num_layers * token_dim)
        save_file({"prompt_embeddings": table}, str(args.output / f"table_rank{accelerator.process_index}.safetensors"))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            peft_model.save_pretrained(args.output / "adapter")
    accelerator.end_training()


if __name__ == "__main__":
    main()
