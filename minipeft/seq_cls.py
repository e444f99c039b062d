"""Sequence classification with a deep prefix: P-Tuning v2 as its paper uses it.

Liu et al. 2022 ("P-Tuning v2", section 3) put trainable prompts at *every* layer of an encoder
(BERT, RoBERTa, DeBERTa) and classify with "a randomly-initialized classification head on top of
the tokens as in BERT" instead of a verbalizer (section 3.3, "Classification Head"). Two things
train: the prefix and the head; the backbone stays frozen.

How the prefix reaches BERT (transformers 5.23, exactly as PEFT 0.21.2 does it):

1. the prefix is a ``transformers.DynamicCache`` of ``num_virtual_tokens`` positions (not an
   ``EncoderDecoderCache``), passed as ``past_key_values``; every self-attention layer appends the
   real tokens' keys and values to it (``BertSelfAttention`` calls ``cache.update`` even though an
   encoder does not otherwise use a cache);
2. the attention mask grows by ``num_virtual_tokens`` ones on the left; BERT builds a
   bidirectional mask from it, so every real token attends to the whole prefix and to every other
   real token (not causally);
3. the positions shift: BERT's (and RoBERTa's) embeddings count from the cache length, so the real
   tokens get positions ``num_virtual_tokens, num_virtual_tokens + 1, ...`` and ``[CLS]`` is no
   longer at position 0; explicit ``position_ids`` are shifted by the same amount. Inputs can then
   be at most ``max_position_embeddings - num_virtual_tokens`` tokens long. PEFT does this, and so
   does the paper's code (THUDM/P-tuning-v2, ``model/sequence_classification.py``).

The classification head follows PEFT's ``modules_to_save``: each module of the base model whose
name ends with one of ``config.modules_to_save`` (PEFT adds ``"classifier"`` and ``"score"``) is
replaced by a :class:`ModulesToSaveWrapper`, which keeps the original frozen and trains a copy. The
copy is saved under the original's name (``base_model.classifier.weight``, ...), so the adapter
file is PEFT's.

The comparison point, input-only prompt tuning (a ``PromptTuningConfig`` with ``task_type=SEQ_CLS``,
Lester et al. 2021; the "shallow" prompt P-Tuning v2 improves on), uses the same head: the soft prompt
``(num_virtual_tokens, hidden_size)`` is prepended to the embedded input tokens, so it goes through
BERT's embedding LayerNorm and every layer like words; the attention mask grows by
``num_virtual_tokens`` ones on the left, ``token_type_ids`` by zeros (segment A), and the positions
count over prompt and input together (``[CLS]`` is at position ``num_virtual_tokens``), as PEFT does.

Follows PEFT ``src/peft/peft_model.py`` (``PeftModelForSequenceClassification``),
``src/peft/utils/other.py`` (``ModulesToSaveWrapper``, ``_set_trainable``) and
``src/peft/utils/save_and_load.py`` (``get_peft_model_state_dict``, ``set_peft_model_state_dict``).

Explained in: book/09_ptuning_v2_for_classification.ipynb
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .config import PeftType, PromptLearningConfig, TaskType
from .injection import extend_attention_mask
from .peft_model import PeftModel, _refuse_checkpointing
from .prompt_tuning import PromptTuningConfig

#: The head names PEFT adds to ``modules_to_save`` for ``SEQ_CLS`` (BERT-likes: ``classifier``; decoders: ``score``).
CLASSIFIER_MODULE_NAMES = ("classifier", "score")
#: Prefix of a trained module's tensors in ``adapter_model.safetensors`` (PEFT's ``PeftModel.base_model``).
SAVED_KEY_PREFIX = "base_model."


class ModulesToSaveWrapper(nn.Module):
    """A module trained in full beside the adapter: the frozen original and a trainable copy.

    PEFT's names, so parameter names and counts line up with PEFT's model: ``original_module``
    (frozen, kept as it was) and ``modules_to_save[adapter_name]`` (a copy; the one that runs and
    trains). Attributes the wrapper lacks (``weight``, ``out_proj``, ...) are read from the copy.

    Args:
        module_to_save: The base model's module, e.g. ``classifier``.
        adapter_name: PEFT's adapter name.
        trained: The copy to train, e.g. loaded from an adapter; a fresh deep copy when ``None``.

    Shapes:
        Those of the wrapped module (``classifier``: ``(batch, hidden_size)`` -> ``(batch, num_labels)``).
    """

    def __init__(self, module_to_save: nn.Module, adapter_name: str = "default", trained: nn.Module | None = None):
        super().__init__()
        self.original_module = module_to_save.requires_grad_(False)
        self.modules_to_save = nn.ModuleDict(
            {adapter_name: trained if trained is not None else copy.deepcopy(module_to_save)}
        )
        self.active_adapter = adapter_name

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the active adapter's copy."""
        return self.modules_to_save[self.active_adapter](*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("original_module", "modules_to_save", "active_adapter"):
                raise
            return getattr(self.modules_to_save[self.active_adapter], name)


def _find_modules_to_save(model: nn.Module, module_names: Sequence[str]) -> list[str]:
    """Paths of the modules that PEFT's ``_set_trainable`` wraps: names ending with one of ``module_names``.

    Suffix matching, as PEFT's (``"classifier"`` matches ``classifier`` and ``bert.my_classifier``).
    A match inside an earlier match is skipped: the outer module is trained whole.
    """
    found: list[str] = []
    for name, _ in model.named_modules():
        if not name or not any(name.endswith(target) for target in module_names):
            continue
        if not any(name.startswith(f"{outer}.") for outer in found):
            found.append(name)
    return found


def _with_classifier_names(config: PromptLearningConfig) -> list[str]:
    """``config.modules_to_save`` plus PEFT's ``["classifier", "score"]``, without duplicates (set on ``config``).

    PEFT appends the two names, twice in fact (``__init__`` and ``add_adapter`` both do), so its
    ``adapter_config.json`` says ``["classifier", "score", "classifier", "score"]``; minipeft writes
    each name once. Either file loads in either library.
    """
    config.modules_to_save = list(dict.fromkeys([*(config.modules_to_save or []), *CLASSIFIER_MODULE_NAMES]))
    return config.modules_to_save


def _trained_copies(
    model: nn.Module,
    config: PromptLearningConfig,
    state: dict[str, torch.Tensor] | None = None,
    source: str | os.PathLike = "the saved state",
) -> dict[str, nn.Module]:
    """Copies of the modules in ``config.modules_to_save``, optionally filled from a saved adapter.

    ``model`` is not modified: this runs before anything is wrapped, so a bad file leaves it intact.

    Args:
        model: The base model (e.g. a ``BertForSequenceClassification``).
        config: The adapter's config; PEFT's head names are added to its ``modules_to_save``.
        state: Saved tensors under PEFT's keys, ``"base_model.<module path>.<name>"``
            (``base_model.classifier.weight``: ``(num_labels, hidden_size)``); ``None``: fresh copies.
        source: Where ``state`` came from, for error messages (the adapter file).

    Returns:
        ``{module path: copy}``, e.g. ``{"classifier": Linear(...)}``.

    Raises:
        ValueError: no module of ``model`` matches ``modules_to_save`` (not a sequence-classification
            model); a matched module already wrapped; ``state`` lacks a module's tensor, has one with
            another shape (a head trained for another ``num_labels``), or has tensors no module takes.
    """
    names = _with_classifier_names(config)
    paths = _find_modules_to_save(model, names)
    if not paths:
        children = ", ".join(name for name, _ in model.named_children())
        raise ValueError(
            f"No module of this {type(model).__name__} matches modules_to_save={names} (its modules: {children}). "
            "A SEQ_CLS adapter trains the model's classification head: load the base model with "
            "AutoModelForSequenceClassification, or name its head in modules_to_save."
        )
    copies: dict[str, nn.Module] = {}
    for path in paths:
        module = model.get_submodule(path)
        if isinstance(module, ModulesToSaveWrapper):
            raise ValueError(
                f"{type(model).__name__}.{path} is already wrapped by another minipeft model (PEFT modifies the "
                "base model in place, and so does minipeft for the head); wrap a fresh base model."
            )
        copies[path] = copy.deepcopy(module)
    if state is not None:
        _load_copies(copies, dict(state), model, source)
    return copies


def _load_copies(copies: dict[str, nn.Module], state: dict[str, torch.Tensor], model: nn.Module, source: Any) -> None:
    """Fill each copy from ``state`` (PEFT's saved keys), checking names and shapes first; pops what it uses."""
    loaded: dict[str, dict[str, torch.Tensor]] = {}
    for path, module in copies.items():
        prefix = f"{SAVED_KEY_PREFIX}{path}."
        saved = {key.removeprefix(prefix): state.pop(key) for key in sorted(state) if key.startswith(prefix)}
        expected = module.state_dict()
        missing = [prefix + key for key in expected if key not in saved]
        if missing:
            raise ValueError(
                f"{source} has no {', '.join(missing)}: the adapter does not hold the trained {path} of this "
                f"{type(model).__name__} (saved for another head, or without it?)."
            )
        unknown = [prefix + key for key in saved if key not in expected]
        if unknown:
            raise ValueError(f"{source}: {', '.join(unknown)} fit no tensor of this {type(model).__name__}'s {path}.")
        wrong = [
            f"{prefix}{key} has shape {tuple(saved[key].shape)}, the model needs {tuple(value.shape)}"
            for key, value in expected.items()
            if saved[key].shape != value.shape
        ]
        if wrong:
            raise ValueError(
                f"{source}: {'; '.join(wrong)} (this {type(model).__name__}'s {path}: a head trained for "
                "another num_labels or hidden_size?)."
            )
        loaded[path] = {key: tensor.to(expected[key]) for key, tensor in saved.items()}
    if state:
        raise ValueError(
            f"{source} holds {', '.join(sorted(state))}, which no module of this {type(model).__name__} in "
            "modules_to_save takes."
        )
    with torch.no_grad():
        for path, module in copies.items():
            module.load_state_dict(loaded[path])


def _cache_kwarg(model: nn.Module) -> str:
    """The keyword under which ``model`` passes a cache to its backbone: ``past_key_values`` (or ``cache``).

    A transformers ``*ForSequenceClassification`` names it or forwards ``**kwargs`` to its backbone
    (``BertForSequenceClassification`` does the latter), so the backbone's signature decides.

    Raises:
        TypeError: neither the model nor its backbone takes a cache (PEFT: "Model does not support
            past key values which are required for prefix tuning").
    """
    backbone = getattr(model, "base_model", model)  # transformers: the `bert` / `roberta` submodule
    outer = inspect.signature(model.forward).parameters
    forwards_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in outer.values())
    for key in ("cache", "past_key_values"):  # transformers >= 5.24 calls it `cache`
        if key in outer or (forwards_kwargs and key in inspect.signature(backbone.forward).parameters):
            return key
    raise TypeError(
        f"{type(model).__name__} takes no past_key_values (nor passes them to {type(backbone).__name__}), "
        "which prefix tuning needs: the prefix is the attention layers' key/value cache."
    )


class PeftModelForSequenceClassification(PeftModel):
    """P-Tuning v2 for sequence classification (``TaskType.SEQ_CLS``): a deep prefix plus a trained head.

    ``get_peft_model(model, PrefixTuningConfig(task_type="SEQ_CLS", ...))`` returns one. The base
    model is frozen; the prefix (at every layer) and a copy of the classification head train; see
    the module docstring for how the prefix reaches the model and how the head is wrapped and saved.
    With a ``PromptTuningConfig(task_type="SEQ_CLS", ...)`` the soft prompt goes before the input
    embeddings instead (input-only prompt tuning, the comparison point), with the same head.

    Args:
        model: A transformers ``*ForSequenceClassification`` (BERT, RoBERTa, ... with ``classifier``;
            decoders with ``score``); its head modules are replaced by :class:`ModulesToSaveWrapper`.
        peft_config: A filled :class:`~minipeft.PrefixTuningConfig` or
            :class:`~minipeft.PromptTuningConfig` with ``task_type=SEQ_CLS``;
            ``["classifier", "score"]`` are added to its ``modules_to_save``, as PEFT does.
        adapter_name: PEFT's adapter name.
        prompt_encoder: A prefix encoder built by ``from_pretrained``.
        trained_modules: ``{module path: trained copy}`` from ``_trained_copies`` (``from_pretrained``);
            fresh copies when ``None``.

    Attributes:
        cls_layer_name: The base model's child holding the head (PEFT's attribute), e.g. ``"classifier"``.

    Raises:
        ValueError: not a prefix or prompt-tuning config; no module matches ``modules_to_save`` (see
            ``_trained_copies``).
        TypeError: a prefix for a model that cannot take a cache (see ``_cache_kwarg``).
    """

    def __init__(
        self,
        model: nn.Module,
        peft_config: PromptLearningConfig,
        adapter_name: str = "default",
        prompt_encoder: nn.Module | None = None,
        trained_modules: dict[str, nn.Module] | None = None,
    ) -> None:
        if peft_config.peft_type not in (PeftType.PREFIX_TUNING, PeftType.PROMPT_TUNING) or (
            peft_config.task_type is not TaskType.SEQ_CLS
        ):
            raise ValueError(
                "PeftModelForSequenceClassification implements prefix and prompt tuning with task_type='SEQ_CLS', got "
                f"peft_type={peft_config.peft_type.value!r}, task_type={TaskType(peft_config.task_type).value!r}."
            )
        # everything that can fail runs before the base model is frozen or wrapped
        _with_classifier_names(peft_config)
        if trained_modules is None:
            trained_modules = _trained_copies(model, peft_config)
        prefix = peft_config.peft_type is PeftType.PREFIX_TUNING
        cache_kwarg = _cache_kwarg(model) if prefix else None  # a soft prompt needs inputs_embeds only
        super().__init__(model, peft_config, adapter_name, prompt_encoder=prompt_encoder)
        self._cache_kwarg = cache_kwarg
        for path, trained in trained_modules.items():
            parent_path, _, child = path.rpartition(".")
            parent = model.get_submodule(parent_path)
            setattr(parent, child, ModulesToSaveWrapper(getattr(parent, child), adapter_name, trained))
            trained.requires_grad_(not peft_config.inference_mode)
        names = peft_config.modules_to_save or []
        self.cls_layer_name = next(
            (name for name, _ in model.named_children() if any(target in name for target in names)), None
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Classify with the prefix injected as the model's ``past_key_values`` (or the soft prompt in front).

        Args:
            input_ids: ``(batch, seq_len)`` token ids (or pass ``inputs_embeds``).
            attention_mask: ``(batch, seq_len)``, 1 for real tokens, 0 for padding; becomes
                ``(batch, num_virtual_tokens + seq_len)`` with the prefix's ones in front.
            inputs_embeds: ``(batch, seq_len, hidden_size)``, instead of ``input_ids``.
            labels: ``(batch,)`` class indices (or ``(batch, num_labels)`` floats for multi-label,
                ``(batch,)`` floats for regression): the base model's loss.
            token_type_ids: ``(batch, seq_len)`` segment ids, passed unchanged (the prefix adds no
                input positions); a soft prompt gets segment 0 in front, as in PEFT.
            position_ids: ``(batch, seq_len)`` counted from 0 (BERT; RoBERTa from ``padding_idx + 1``);
                shifted by ``num_virtual_tokens`` as PEFT does. When ``None``, the model counts from
                the cache length, which is the same. A soft prompt takes the row's first
                ``num_virtual_tokens`` positions and the input the ones after: what the model
                computes itself when ``position_ids`` is ``None`` (PEFT drops ``position_ids`` for
                prompt tuning, with a warning, and gets the same).
            **kwargs: Passed to the base model (``output_attentions``, ``output_hidden_states``, ...).

        Returns:
            The base model's ``SequenceClassifierOutput``: ``logits`` ``(batch, num_labels)``, and
            ``loss`` when ``labels`` are given.

        Raises:
            ValueError: neither ``input_ids`` nor ``inputs_embeds``; a ``past_key_values`` passed in.
            RuntimeError: the base model did not use the prefix (it dropped the cache).
        """
        num_virtual = self.active_peft_config.num_virtual_tokens
        if isinstance(self.active_peft_config, PromptTuningConfig):
            return self._soft_prompt_forward(
                input_ids, attention_mask, inputs_embeds, labels, token_type_ids, position_ids, **kwargs
            )
        if self.training:
            _refuse_checkpointing(self.base_model)
        if input_ids is None and inputs_embeds is None:
            raise ValueError("forward needs input_ids (batch, seq_len) or inputs_embeds (batch, seq_len, hidden_size).")
        for key in ("past_key_values", "cache"):
            if kwargs.pop(key, None) is not None:
                raise ValueError(f"A sequence classifier's {key} is its prefix; pass no {key}.")
        batch_size = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        if attention_mask is not None:
            attention_mask = extend_attention_mask(attention_mask, num_virtual)  # (B, P + T)
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if position_ids is not None:
            kwargs["position_ids"] = position_ids + num_virtual
        cache = self.get_prompt(batch_size)  # DynamicCache, num_virtual positions
        kwargs[self._cache_kwarg] = cache
        output = self.base_model(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, labels=labels, **kwargs
        )
        if cache.get_seq_length() == num_virtual:  # the attention layers append to the cache they use
            raise RuntimeError(
                f"{type(self.base_model).__name__} ignored the prefix: its attention layers never saw the "
                f"{self._cache_kwarg} passed to it."
            )
        return output

    def _soft_prompt_forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        labels: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        **kwargs: Any,
    ) -> Any:
        """Prompt tuning: the soft prompt as the first ``num_virtual_tokens`` inputs (see :meth:`forward`)."""
        if input_ids is None and inputs_embeds is None:
            raise ValueError("forward needs input_ids (batch, seq_len) or inputs_embeds (batch, seq_len, hidden_size).")
        num_virtual = self.active_peft_config.num_virtual_tokens
        if inputs_embeds is None:
            inputs_embeds = self.base_model.get_input_embeddings()(input_ids)  # (B, T, hidden)
        batch_size = inputs_embeds.shape[0]
        prompt = self.get_prompt(batch_size).to(inputs_embeds.dtype)  # (B, P, hidden)
        inputs_embeds = torch.cat([prompt, inputs_embeds], dim=1)  # (B, P + T, hidden)
        if attention_mask is not None:
            kwargs["attention_mask"] = extend_attention_mask(attention_mask, num_virtual)  # (B, P + T)
        if token_type_ids is not None:  # the prompt is segment 0 (A)
            kwargs["token_type_ids"] = torch.cat([token_type_ids.new_zeros(batch_size, num_virtual), token_type_ids], 1)
        if position_ids is not None:  # the prompt takes the row's first P positions, the input the next T
            virtual = position_ids[:, :1] + torch.arange(num_virtual, device=position_ids.device)  # (B, P)
            kwargs["position_ids"] = torch.cat([virtual, position_ids + num_virtual], dim=1)  # (B, P + T)
        return self.base_model(inputs_embeds=inputs_embeds, labels=labels, **kwargs)

    def _modules_to_save_state(self) -> dict[str, torch.Tensor]:
        """The trained copies' tensors under PEFT's saved keys, ``base_model.<module path>.<name>``."""
        state: dict[str, torch.Tensor] = {}
        for path, module in self.base_model.named_modules():
            if isinstance(module, ModulesToSaveWrapper):
                trained = module.modules_to_save[self.active_adapter]
                state.update({f"{SAVED_KEY_PREFIX}{path}.{key}": v for key, v in trained.state_dict().items()})
        return state
