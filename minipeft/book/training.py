"""Training and evaluating a prefix on a labelling task, on a CPU.

The task format follows PEFT's prefix-tuning tutorial: the model reads ``Tweet text : {text} Label : ``
and must continue with the label (``complaint`` / ``no complaint``) and the end-of-sequence token.
Only the label tokens carry a loss (prompt tokens get label -100).

CPU matters here: SmolLM2's output layer has 49,152 rows, and computing logits for every position of
a batch costs more than the rest of the model's forward pass. The loss needs logits only at the last
few positions (the label), so :func:`label_loss` asks transformers for just those
(``logits_to_keep``) and left-pads batches so that every row's label sits at the end.

A sequence classifier (``TaskType.SEQ_CLS``, P-Tuning v2 as its paper uses it) needs no prompt
format: :func:`classifier_batch` tokenizes the bare posts (right-padded, BERT's way) with the labels
as class indices, :func:`classification_loss` is the model's cross-entropy over its head's logits,
and :func:`train_classifier` is :func:`train` with that loss.

Explained in: book/07_training_a_prefix.ipynb; classifiers in book/09_ptuning_v2_for_classification.ipynb
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..injection import position_ids_kwargs
from .complaints import LABELS, format_prompt


@dataclass
class TrainingHistory:
    """What :func:`train` measured: training loss per step, validation loss at ``eval_steps``, wall time (s).

    Explained in: book/07_training_a_prefix.ipynb
    """

    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def collate(tokenizer: Any, examples: Sequence[dict[str, Any]], with_targets: bool = True) -> dict[str, torch.Tensor]:
    """A left-padded batch of prompts, followed (``with_targets``) by each label and the EOS token.

    Returns:
        ``input_ids``, ``attention_mask``, ``labels`` (-100 except on label and EOS tokens), each
        ``(batch, seq_len)``, and ``target_length``: the longest label + EOS, in tokens (a 0-d tensor).

    Explained in: book/07_training_a_prefix.ipynb
    """
    rows, targets = [], []
    for example in examples:
        prompt_ids = tokenizer(format_prompt(example["text"]), add_special_tokens=False)["input_ids"]
        target_ids = []
        if with_targets:
            target_ids = tokenizer(example["label"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(prompt_ids + target_ids)
        targets.append(len(target_ids))
    length = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (length - len(r)) + r for r in rows])
    attention_mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows])
    labels = torch.full_like(input_ids, -100)
    for i, n in enumerate(targets):
        if n:
            labels[i, -n:] = input_ids[i, -n:]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "target_length": torch.tensor(max(targets)),
    }


def _label_logits(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the label positions only, ``(B, target_length, V)``, and the targets ``(B, target_length)``."""
    keep = int(batch["target_length"]) + 1  # the position before the first label token predicts it
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        logits_to_keep=keep,
        **position_ids_kwargs(model, batch["attention_mask"]),
    )
    logits = out.logits[:, -keep:-1]  # (B, keep - 1, V): predictions for the last keep - 1 tokens
    targets = batch["labels"][:, -(keep - 1) :]  # (B, keep - 1), -100 where no label token
    return logits, targets


def label_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the label tokens, with logits computed for the last positions only.

    Equal to ``model(**batch).loss`` for a left-padded :func:`collate` batch, without computing
    ``(batch, seq_len, vocab_size)`` logits: only ``(batch, target_length + 1, vocab_size)``.

    Explained in: book/07_training_a_prefix.ipynb
    """
    logits, targets = _label_logits(model, batch)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
    )


#: ``batch_loss(model, tokenizer, examples)``: the mean loss of a batch of examples (a 0-d tensor).
BatchLoss = Callable[[Any, Any, Sequence[dict[str, Any]]], torch.Tensor]


def _causal_lm_loss(model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]]) -> torch.Tensor:
    return label_loss(model, collate(tokenizer, examples))


@torch.no_grad()
def evaluate_loss(
    model: Any,
    tokenizer: Any,
    examples: Sequence[dict[str, Any]],
    batch_size: int = 16,
    batch_loss: BatchLoss | None = None,
) -> float:
    """Mean loss over ``examples`` (weighted by batch size): the label loss, or ``batch_loss``'s.

    Explained in: book/07_training_a_prefix.ipynb
    """
    batch_loss = batch_loss or _causal_lm_loss
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        total += batch_loss(model, tokenizer, chunk).item() * len(chunk)
        count += len(chunk)
    model.train(was_training)
    return total / count


def train(
    model: Any,
    tokenizer: Any,
    train_examples: Sequence[dict[str, Any]],
    *,
    steps: int,
    learning_rate: float,
    batch_size: int = 8,
    seed: int = 0,
    eval_examples: Sequence[dict[str, Any]] | None = None,
    eval_every: int | None = None,
    progress: bool = True,
    batch_loss: BatchLoss | None = None,
) -> TrainingHistory:
    """Train the trainable parameters of ``model`` (the prefix) with AdamW and a linear decay.

    Batches are drawn from ``train_examples`` shuffled with ``seed`` (reshuffled each epoch); the
    learning rate decays linearly to 0 over ``steps`` (as in PEFT's prefix-tuning tutorial, which
    uses ``get_linear_schedule_with_warmup`` without warm-up).

    Args:
        model: A minipeft ``PeftModel`` (or any model whose trainable parameters are to be trained).
        tokenizer: Its tokenizer (with ``pad_token_id`` and ``eos_token_id``).
        train_examples: Dicts with ``text`` and ``label``.
        steps: Optimizer steps.
        learning_rate: Peak learning rate.
        batch_size: Examples per step.
        seed: Seeds the shuffling and ``torch``.
        eval_examples: If given, the validation loss is measured every ``eval_every`` steps and at the end.
        eval_every: Steps between validation measurements (default: ``steps // 5``).
        progress: Show a progress bar.
        batch_loss: ``batch_loss(model, tokenizer, examples)``, the loss to minimise; ``None``: the
            causal language model's label loss (:func:`label_loss` on a :func:`collate` batch).
            :func:`train_classifier` passes :func:`classification_loss`.

    Returns:
        A :class:`TrainingHistory`. The model is left in eval mode.

    Raises:
        ValueError: no trainable parameters, or no training examples.

    Explained in: book/07_training_a_prefix.ipynb
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters; wrap it with get_peft_model first.")
    if not train_examples:
        raise ValueError("train needs at least one training example.")
    from transformers import get_linear_schedule_with_warmup

    batch_loss = batch_loss or _causal_lm_loss
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=steps)
    eval_every = eval_every or max(1, steps // 5)
    history = TrainingHistory()
    order: list[int] = []
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), disable=not progress, desc="training", mininterval=10.0)
    for step in bar:
        if len(order) < batch_size:
            epoch = list(range(len(train_examples)))
            rng.shuffle(epoch)
            order += epoch
        batch_ids, order = order[:batch_size], order[batch_size:]
        loss = batch_loss(model, tokenizer, [train_examples[i] for i in batch_ids])
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        history.loss.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if eval_examples is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
            history.eval_steps.append(step + 1)
            history.eval_loss.append(evaluate_loss(model, tokenizer, eval_examples, batch_loss=batch_loss))
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def parse_label(generated: str) -> str:
    """Map generated text to a label: ``"no complaint"``, ``"complaint"``, or the text itself (a miss).

    Explained in: book/07_training_a_prefix.ipynb
    """
    text = generated.strip().lower()
    for label in sorted(LABELS, key=len, reverse=True):  # "no complaint" before "complaint"
        if text.startswith(label):
            return label
    return text


@torch.no_grad()
def predict_labels(
    model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], batch_size: int = 16, max_new_tokens: int = 4
) -> list[str]:
    """Greedy-generate each example's label after its prompt; see :func:`parse_label`.

    Explained in: book/07_training_a_prefix.ipynb
    """
    model.eval()
    predictions = []
    for start in range(0, len(examples), batch_size):
        batch = collate(tokenizer, examples[start : start + batch_size], with_targets=False)
        out = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        new = out[:, batch["input_ids"].shape[1] :]
        predictions += [parse_label(t) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return predictions


@torch.no_grad()
def predict_labels_by_likelihood(
    model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], labels: Sequence[str] = LABELS, batch_size: int = 16
) -> list[str]:
    """Choose, for each example, the label whose tokens the model finds most likely after the prompt.

    A zero-shot classifier that needs no instruction following: the model only has to prefer
    " complaint" or " no complaint" as a continuation, never to produce it unprompted. Scores are
    the summed log-probabilities of the label's tokens (without the EOS token).

    Explained in: book/07_training_a_prefix.ipynb
    """
    model.eval()
    scores = torch.zeros(len(examples), len(labels))
    for j, label in enumerate(labels):
        for start in range(0, len(examples), batch_size):
            chunk = [{**e, "label": label} for e in examples[start : start + batch_size]]
            logits, targets = _label_logits(model, collate(tokenizer, chunk))
            log_probs = logits.log_softmax(-1)  # (B, target_length, V)
            targets = targets.masked_fill(targets == tokenizer.eos_token_id, -100)  # the label words only
            picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            scores[start : start + len(chunk), j] = (picked * (targets != -100)).sum(-1)
    return [labels[i] for i in scores.argmax(-1).tolist()]


def accuracy(predictions: Sequence[str], examples: Sequence[dict[str, Any]]) -> float:
    """Share of predictions equal to the examples' labels (anything else counts as wrong).

    Explained in: book/07_training_a_prefix.ipynb
    """
    return sum(p == e["label"] for p, e in zip(predictions, examples, strict=True)) / len(examples)


def classifier_batch(
    tokenizer: Any, examples: Sequence[dict[str, Any]], labels: Sequence[str] = LABELS
) -> dict[str, torch.Tensor]:
    """The posts of ``examples`` tokenized for a sequence classifier, with their labels as class indices.

    No prompt format: the text alone, with the tokenizer's special tokens (``[CLS] ... [SEP]`` for
    BERT), padded on the tokenizer's side (the right for BERT).

    Args:
        tokenizer: The classifier's tokenizer.
        examples: Dicts with ``text`` and (for ``labels``) ``label``.
        labels: The class names in the head's order: ``labels[i]`` is class ``i``.

    Returns:
        The tokenizer's tensors (``input_ids``, ``attention_mask``, BERT's ``token_type_ids``), each
        ``(batch, seq_len)``, and ``labels`` ``(batch,)`` when every example has a ``label``.

    Raises:
        ValueError: an example's label is not one of ``labels``.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """
    batch = dict(tokenizer([e["text"] for e in examples], padding=True, truncation=True, return_tensors="pt"))
    if all("label" in e for e in examples):
        unknown = sorted({e["label"] for e in examples} - set(labels))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {list(labels)}.")
        batch["labels"] = torch.tensor([labels.index(e["label"]) for e in examples])  # (B,)
    return batch


def classification_loss(
    model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], labels: Sequence[str] = LABELS
) -> torch.Tensor:
    """Mean cross-entropy of the classifier's logits ``(batch, num_labels)`` against the examples' classes.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """
    batch = classifier_batch(tokenizer, examples, labels)
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits  # (B, num_labels)
    return torch.nn.functional.cross_entropy(logits, batch["labels"])


def train_classifier(
    model: Any,
    tokenizer: Any,
    train_examples: Sequence[dict[str, Any]],
    *,
    steps: int,
    learning_rate: float,
    batch_size: int = 16,
    seed: int = 0,
    labels: Sequence[str] = LABELS,
    eval_examples: Sequence[dict[str, Any]] | None = None,
    eval_every: int | None = None,
    progress: bool = True,
) -> TrainingHistory:
    """Train a sequence classifier's trainable parameters: :func:`train` with :func:`classification_loss`.

    Whatever requires a gradient trains: a deep prefix and the head
    (``get_peft_model(model, PrefixTuningConfig(task_type="SEQ_CLS", ...))``), a soft prompt and the
    head (``PromptTuningConfig``), the head alone (a linear probe: freeze the rest by hand), or
    everything (fine-tuning). Same optimizer (AdamW, no weight decay), linear decay to 0 and seeded
    batch order as :func:`train`; the model is in training mode (dropout on) while it trains.

    Args:
        model: A ``*ForSequenceClassification`` or a minipeft ``PeftModelForSequenceClassification``.
        tokenizer: Its tokenizer.
        train_examples: Dicts with ``text`` and ``label``.
        steps, learning_rate, batch_size, seed, eval_examples, eval_every, progress: As in :func:`train`.
        labels: The class names in the head's order.

    Returns:
        A :class:`TrainingHistory`; ``eval_loss`` is the cross-entropy on ``eval_examples``.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """

    def batch_loss(model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]]) -> torch.Tensor:
        return classification_loss(model, tokenizer, examples, labels)

    return train(
        model,
        tokenizer,
        train_examples,
        steps=steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
        eval_examples=eval_examples,
        eval_every=eval_every,
        progress=progress,
        batch_loss=batch_loss,
    )


@torch.no_grad()
def predict_classes(
    model: Any,
    tokenizer: Any,
    examples: Sequence[dict[str, Any]],
    labels: Sequence[str] = LABELS,
    batch_size: int = 64,
) -> list[str]:
    """The class name of the largest logit for each example (compare with :func:`accuracy`); eval mode.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """
    model.eval()
    predictions: list[str] = []
    for start in range(0, len(examples), batch_size):
        batch = classifier_batch(tokenizer, [{"text": e["text"]} for e in examples[start : start + batch_size]])
        predictions += [labels[i] for i in model(**batch).logits.argmax(-1).tolist()]  # logits: (B, num_labels)
    return predictions
