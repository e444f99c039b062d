"""Training and evaluating a prefix on a labelling task, on a CPU, with Hugging Face ``datasets``.

The task format follows PEFT's prefix-tuning tutorial: the model reads ``Tweet text : {text} Label : ``
and must continue with the label (``complaint`` / ``no complaint``) and the end-of-sequence token.
Only the label tokens carry a loss (prompt tokens get label -100).

The data path is the tutorial's: :func:`tokenize_prompts` tokenizes a ``Dataset`` or ``DatasetDict``
(:func:`load_complaints`) with ``.map(batched=True)``, and a
``DataLoader`` batches it with a transformers data collator (:func:`label_collator`). Unlike the
tutorial, which pads every row to 64 tokens in its ``preprocess_function``, the collator pads each
batch to its longest row, on the left.

CPU matters here: SmolLM2's output layer has 49,152 rows, and computing logits for every position of
a batch costs more than the rest of the model's forward pass. The loss needs logits only at the last
few positions (the label), so :func:`label_loss` asks transformers for just those
(``logits_to_keep``); left padding puts every row's label at the end.

A sequence classifier (``TaskType.SEQ_CLS``, P-Tuning v2 as its paper uses it) needs no prompt
format: :func:`tokenize_for_classifier` tokenizes the bare posts with the labels as class indices,
``DataCollatorWithPadding`` pads them on the tokenizer's side (the right for BERT),
:func:`classification_loss` is the cross-entropy over the head's logits, and
:func:`train_classifier` is :func:`train` with that loss and collator.

Explained in: book/07_training_a_prefix.ipynb; classifiers in book/09_ptuning_v2_for_classification.ipynb
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..injection import position_ids_kwargs
from .complaints import LABELS, format_prompt, label_texts, quiet_datasets


@dataclass
class TrainingHistory:
    """What :func:`train` measured: training loss per step, validation loss at ``eval_steps``, wall time (s).

    Explained in: book/07_training_a_prefix.ipynb
    """

    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _first_split(dataset: Any) -> Any:
    """``dataset`` itself, or the first split of a ``DatasetDict`` (for its features and columns)."""
    return dataset if hasattr(dataset, "features") else next(iter(dataset.values()))


def tokenize_prompts(dataset: Any, tokenizer: Any, with_targets: bool = True, label: str | None = None) -> Any:
    """Tokenize posts for a causal LM with ``dataset.map(batched=True)``: prompt, then label and EOS.

    Each row becomes ``input_ids`` = the tokens of :func:`format_prompt`
    followed (``with_targets``) by the label's tokens and the EOS token, ``attention_mask`` (ones) and
    ``labels`` (-100 on the prompt, the ids on the label and EOS), as in PEFT's prefix-tuning
    tutorial; every other column is removed. No padding: :func:`label_collator` pads each batch.

    Args:
        dataset: A ``Dataset`` or ``DatasetDict`` with ``"Tweet text"`` and (``with_targets``) the
            ``ClassLabel`` ``"Label"`` (:func:`load_complaints`).
        tokenizer: The model's tokenizer (with ``eos_token_id``); no special tokens are added.
        with_targets: Append the label and EOS and add ``labels``; ``False``: the prompts alone,
            to generate from.
        label: Use this label text for every row instead of the row's own (to score a label).

    Returns:
        The same kind of object as ``dataset``, with ``input_ids``, ``attention_mask`` and
        (``with_targets``) ``labels``.

    Explained in: book/07_training_a_prefix.ipynb
    """
    names = _first_split(dataset).features["Label"].names if with_targets and label is None else None

    def preprocess(batch: dict[str, list]) -> dict[str, list]:
        prompts = tokenizer([format_prompt(t) for t in batch["Tweet text"]], add_special_tokens=False)["input_ids"]
        if not with_targets:
            return {"input_ids": prompts, "attention_mask": [[1] * len(p) for p in prompts]}
        texts = [label] * len(prompts) if label is not None else [names[i] for i in batch["Label"]]
        targets = [t + [tokenizer.eos_token_id] for t in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        return {
            "input_ids": [p + t for p, t in zip(prompts, targets)],
            "attention_mask": [[1] * (len(p) + len(t)) for p, t in zip(prompts, targets)],
            "labels": [[-100] * len(p) + t for p, t in zip(prompts, targets)],
        }

    with quiet_datasets():
        return dataset.map(preprocess, batched=True, remove_columns=_first_split(dataset).column_names)


def label_collator(tokenizer: Any) -> Any:
    """transformers' ``DataCollatorForSeq2Seq``: pads a batch of :func:`tokenize_prompts` rows to its longest.

    Despite its name it suits a causal LM: it pads ``input_ids`` (with ``pad_token_id``) and
    ``attention_mask`` (with 0) through the tokenizer and ``labels`` with -100, all on the tokenizer's
    side, which must be the left (labels at the end, for :func:`label_loss` and for generating).

    Raises:
        ValueError: the tokenizer pads on the right.

    Explained in: book/07_training_a_prefix.ipynb
    """
    from transformers import DataCollatorForSeq2Seq

    if tokenizer.padding_side != "left":
        raise ValueError(
            f"label_collator needs a tokenizer that pads on the left (padding_side={tokenizer.padding_side!r}); "
            "set tokenizer.padding_side = 'left'."
        )
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")


def _loader(dataset: Any, collator: Any, batch_size: int, sampler: Any = None) -> Any:
    """A ``DataLoader`` in ``dataset``'s order (or ``sampler``'s); its own generator leaves torch's global RNG alone."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collator, generator=torch.Generator())


class _EpochShuffler(torch.utils.data.Sampler):
    """Indices without end: each epoch a new permutation of ``range(n)`` by ``random.Random(seed)``."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed)
        while True:
            epoch = list(range(self.n))
            rng.shuffle(epoch)
            yield from epoch


def _label_logits(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the label positions only, ``(B, T, V)``, and the targets ``(B, T)``; T: the longest label + EOS."""
    target_length = int((batch["labels"] != -100).sum(-1).max())  # left padding: labels are each row's last tokens
    keep = target_length + 1  # the position before the first label token predicts it
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

    Equal to ``model(**batch).loss`` for a left-padded :func:`label_collator` batch, without computing
    ``(batch, seq_len, vocab_size)`` logits: only ``(batch, target_length + 1, vocab_size)``.

    Explained in: book/07_training_a_prefix.ipynb
    """
    logits, targets = _label_logits(model, batch)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
    )


#: ``batch_loss(model, batch)``: the mean loss of a collated batch of tensors (a 0-d tensor).
BatchLoss = Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]


@torch.no_grad()
def evaluate_loss(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    batch_size: int = 16,
    batch_loss: BatchLoss | None = None,
    data_collator: Any = None,
) -> float:
    """Mean loss over a tokenized ``dataset`` (weighted by batch size): :func:`label_loss`, or ``batch_loss``.

    Batches in the dataset's order, collated by ``data_collator`` (default :func:`label_collator`).

    Explained in: book/07_training_a_prefix.ipynb
    """
    batch_loss = batch_loss or label_loss
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in _loader(dataset, data_collator or label_collator(tokenizer), batch_size):
        n = len(batch["input_ids"])
        total += batch_loss(model, batch).item() * n
        count += n
    model.train(was_training)
    return total / count


def _progress_bar(steps: int, enabled: bool) -> Any:
    """tqdm over ``steps``. Where it would write text to a file that is not a terminal (an executed
    notebook, a log), it stays silent (``delay``) and :func:`train` prints its final line once: one
    clean bar instead of a line every refresh."""
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm as widget_tqdm

    once = not issubclass(tqdm, widget_tqdm) and not sys.stderr.isatty()  # text, not to a terminal
    bar = tqdm(total=steps, disable=not enabled, desc="training", mininterval=10.0, delay=float("inf") if once else 0)
    bar.once = once
    return bar


def train(
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    *,
    steps: int,
    learning_rate: float,
    batch_size: int = 8,
    seed: int = 0,
    eval_dataset: Any = None,
    eval_every: int | None = None,
    progress: bool = True,
    batch_loss: BatchLoss | None = None,
    data_collator: Any = None,
) -> TrainingHistory:
    """Train the trainable parameters of ``model`` (the prefix) with AdamW and a linear decay.

    Batches come from a ``DataLoader`` over ``train_dataset``: its rows shuffled with
    ``random.Random(seed)`` (reshuffled each epoch, the epochs one stream of rows cut into batches),
    collated by ``data_collator``. The learning rate decays linearly to 0 over ``steps`` (as in PEFT's
    prefix-tuning tutorial, which uses ``get_linear_schedule_with_warmup`` without warm-up).

    Args:
        model: A minipeft ``PeftModel`` (or any model whose trainable parameters are to be trained).
        tokenizer: Its tokenizer (with ``pad_token_id`` and ``eos_token_id``), for the default collator.
        train_dataset: A tokenized ``Dataset``: :func:`tokenize_prompts` rows (or, with another
            ``data_collator``, whatever it collates).
        steps: Optimizer steps.
        learning_rate: Peak learning rate.
        batch_size: Examples per step.
        seed: Seeds the shuffling and ``torch``.
        eval_dataset: If given (tokenized like ``train_dataset``), the validation loss is measured
            every ``eval_every`` steps and at the end.
        eval_every: Steps between validation measurements (default: ``steps // 5``).
        progress: Show a progress bar.
        batch_loss: ``batch_loss(model, batch)``, the loss to minimise; ``None``: :func:`label_loss`.
            :func:`train_classifier` passes :func:`classification_loss`.
        data_collator: Makes a batch of tensors from a list of rows; ``None``: :func:`label_collator`.

    Returns:
        A :class:`TrainingHistory`. The model is left in eval mode.

    Raises:
        ValueError: no trainable parameters, no training rows, or rows that are not tokenized.

    Explained in: book/07_training_a_prefix.ipynb
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters; wrap it with get_peft_model first.")
    if not len(train_dataset):
        raise ValueError("train needs at least one training example.")
    if "input_ids" not in train_dataset.column_names:
        raise ValueError(
            f"train_dataset has columns {train_dataset.column_names}, no input_ids: tokenize it first "
            "(tokenize_prompts, or tokenize_for_classifier for train_classifier)."
        )
    from transformers import get_linear_schedule_with_warmup

    batch_loss = batch_loss or label_loss
    collator = data_collator or label_collator(tokenizer)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=steps)
    eval_every = eval_every or max(1, steps // 5)
    history = TrainingHistory()
    batches = iter(_loader(train_dataset, collator, batch_size, sampler=_EpochShuffler(len(train_dataset), seed)))
    start = time.perf_counter()
    model.train()
    bar = _progress_bar(steps, progress)
    for step in range(steps):
        loss = batch_loss(model, next(batches))
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        history.loss.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.update(1)
        if eval_dataset is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
            history.eval_steps.append(step + 1)
            history.eval_loss.append(evaluate_loss(model, tokenizer, eval_dataset, 16, batch_loss, collator))
    if bar.once and not bar.disable:
        print(bar, file=sys.stderr, flush=True)  # the bar's one line, written once
    bar.close()
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
    model: Any, tokenizer: Any, dataset: Any, batch_size: int = 16, max_new_tokens: int = 4
) -> list[str]:
    """Greedy-generate each post's label after its prompt (``dataset``: ``"Tweet text"``); see :func:`parse_label`.

    Explained in: book/07_training_a_prefix.ipynb
    """
    model.eval()
    predictions = []
    prompts = tokenize_prompts(dataset, tokenizer, with_targets=False)
    for batch in _loader(prompts, label_collator(tokenizer), batch_size):
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
    model: Any, tokenizer: Any, dataset: Any, labels: Sequence[str] = LABELS, batch_size: int = 16
) -> list[str]:
    """Choose, for each post, the label whose tokens the model finds most likely after the prompt.

    A zero-shot classifier that needs no instruction following: the model only has to prefer
    " complaint" or " no complaint" as a continuation, never to produce it unprompted. Scores are
    the summed log-probabilities of the label's tokens (without the EOS token).

    Explained in: book/07_training_a_prefix.ipynb
    """
    model.eval()
    scores = torch.zeros(len(dataset), len(labels))
    for j, label in enumerate(labels):
        start = 0
        for batch in _loader(tokenize_prompts(dataset, tokenizer, label=label), label_collator(tokenizer), batch_size):
            logits, targets = _label_logits(model, batch)
            log_probs = logits.log_softmax(-1)  # (B, target_length, V)
            targets = targets.masked_fill(targets == tokenizer.eos_token_id, -100)  # the label words only
            picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            scores[start : start + len(targets), j] = (picked * (targets != -100)).sum(-1)
            start += len(targets)
    return [labels[i] for i in scores.argmax(-1).tolist()]


def accuracy(predictions: Sequence[str], dataset: Any) -> float:
    """Share of predictions equal to the rows' labels (``dataset``'s ``ClassLabel`` ``"Label"``); anything else is wrong.

    Explained in: book/07_training_a_prefix.ipynb
    """
    truth = label_texts(dataset)
    return sum(p == t for p, t in zip(predictions, truth, strict=True)) / len(truth)


def tokenize_for_classifier(dataset: Any, tokenizer: Any, labels: Sequence[str] = LABELS) -> Any:
    """Tokenize the bare posts for a sequence classifier with ``dataset.map(batched=True)``, labels as class indices.

    No prompt format: the text alone, with the tokenizer's special tokens (``[CLS] ... [SEP]`` for
    BERT), unpadded (``DataCollatorWithPadding`` pads each batch, on the tokenizer's side).

    Args:
        dataset: A ``Dataset`` or ``DatasetDict`` with ``"Tweet text"`` and the ``ClassLabel`` ``"Label"``.
        tokenizer: The classifier's tokenizer.
        labels: The class names in the head's order: ``labels[i]`` is class ``i`` (RAFT's ``Label``
            numbers its names differently: 1 = complaint, 2 = no complaint).

    Returns:
        The same kind of object, with the tokenizer's columns (``input_ids``, ``attention_mask``,
        BERT's ``token_type_ids``) and ``labels`` (class indices); every other column removed.

    Raises:
        ValueError: a row's label is not one of ``labels`` (RAFT's unlabelled test posts, say).

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """
    names = _first_split(dataset).features["Label"].names

    def preprocess(batch: dict[str, list]) -> dict[str, list]:
        texts = [names[i] for i in batch["Label"]]
        unknown = sorted(set(texts) - set(labels))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {list(labels)}.")
        return {**tokenizer(batch["Tweet text"], truncation=True), "labels": [labels.index(t) for t in texts]}

    with quiet_datasets():
        return dataset.map(preprocess, batched=True, remove_columns=_first_split(dataset).column_names)


def classifier_collator(tokenizer: Any) -> Any:
    """transformers' ``DataCollatorWithPadding``: pads a batch of :func:`tokenize_for_classifier` rows to its longest.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer, return_tensors="pt")


def classification_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the classifier's logits ``(batch, num_labels)`` against ``batch["labels"]``.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits  # (B, num_labels)
    return torch.nn.functional.cross_entropy(logits, batch["labels"])


def train_classifier(
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    *,
    steps: int,
    learning_rate: float,
    batch_size: int = 16,
    seed: int = 0,
    eval_dataset: Any = None,
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
        tokenizer: Its tokenizer (for :func:`classifier_collator`).
        train_dataset: :func:`tokenize_for_classifier` rows.
        steps, learning_rate, batch_size, seed, eval_dataset, eval_every, progress: As in :func:`train`.

    Returns:
        A :class:`TrainingHistory`; ``eval_loss`` is the cross-entropy on ``eval_dataset``.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """
    return train(
        model,
        tokenizer,
        train_dataset,
        steps=steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
        eval_dataset=eval_dataset,
        eval_every=eval_every,
        progress=progress,
        batch_loss=classification_loss,
        data_collator=classifier_collator(tokenizer),
    )


@torch.no_grad()
def predict_classes(
    model: Any, tokenizer: Any, dataset: Any, labels: Sequence[str] = LABELS, batch_size: int = 64
) -> list[str]:
    """The class name of the largest logit for each post (``dataset``: ``"Tweet text"``); eval mode.

    Compare with :func:`accuracy`.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """
    model.eval()
    predictions: list[str] = []
    with quiet_datasets():
        texts = dataset.map(
            lambda batch: tokenizer(batch["Tweet text"], truncation=True),
            batched=True,
            remove_columns=dataset.column_names,
        )
    for batch in _loader(texts, classifier_collator(tokenizer), batch_size):
        predictions += [labels[i] for i in model(**batch).logits.argmax(-1).tolist()]  # logits: (B, num_labels)
    return predictions
