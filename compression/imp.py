"""Iterative magnitude pruning (lottery tickets): masks, pruning steps, enforcement, rewinding.

Masks are a plain ``dict`` from a weight's parameter name (``"features.0.weight"``) to a bool
tensor of the weight's shape, ``True`` where the weight is alive. They are ``torch.save``-able
as they are; :func:`load` checks a saved mapping against a model when a run resumes. Weights
without a mask are alive (excluded layers usually have none).

Prunable tensors are the ``weight`` of every ``Conv2d`` and ``Linear`` module, including the
encoder/decoder convolutions of ALDS-factorized layers; biases and BatchNorm are never pruned.
Each weight has a role: ``output`` for the last layer in registration order (the
classifier), otherwise ``conv`` or ``fc`` by the type of the layer (for ALDS factors: of the
layer they replace).

A pruning step follows an exact schedule: a weight group of ``N`` entries pruned ``L`` times
at rate ``p`` keeps ``round(N * (1 - p) ** L)`` weights while at least ``1 / p`` remain (the
level ``L`` is recognised from the alive count, so the masks need no extra state); ties in
magnitude are pruned in parameter order, then by flat index, so the result is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from compression import metrics
from compression.factorized import FactorizedConv2d, FactorizedLinear

__all__ = [
    "ROLES",
    "Masks",
    "apply",
    "capture",
    "excluded",
    "load",
    "prunable",
    "prune",
    "rewind",
    "roles",
    "shuffle",
    "sparsity",
]

Masks = dict[str, Tensor]
"""Parameter name → bool tensor (``True``: alive) of the weight's shape."""

ROLES = ("conv", "fc", "output")


def prunable(model: nn.Module) -> dict[str, Tensor]:
    """Name → ``weight`` parameter of every Conv2d and Linear module, in registration order."""
    return {_weight_name(name): module.weight for name, module in _layers(model)}


def roles(model: nn.Module) -> dict[str, str]:
    """Name → role of each prunable weight: ``output`` (the last layer), ``conv`` or ``fc``.

    Both factors of an ALDS-factorized layer take the role of the layer they replace.
    """
    factorized = {
        name: "conv" if isinstance(module, FactorizedConv2d) else "fc"
        for name, module in model.named_modules()
        if isinstance(module, FactorizedConv2d | FactorizedLinear)
    }
    layer_of: dict[str, str] = {}
    out: dict[str, str] = {}
    for name, module in _layers(model):
        parent = name.rpartition(".")[0]
        weight = _weight_name(name)
        if parent in factorized and parent != name:
            layer_of[weight], out[weight] = parent, factorized[parent]
        else:
            layer_of[weight] = name
            out[weight] = "conv" if isinstance(module, nn.Conv2d) else "fc"
    if out:
        last = layer_of[next(reversed(out))]
        out.update({weight: "output" for weight, layer in layer_of.items() if layer == last})
    return out


def prune(
    model: nn.Module,
    fraction: float,
    *,
    masks: Mapping[str, Tensor] | None = None,
    scope: Literal["global", "layer"] = "global",
    exclude: Iterable[str] = (),
    rates: Mapping[str, float] | None = None,
) -> Masks:
    """Masks that remove ``fraction`` of the still-alive weights, smallest ``|w|`` first.

    ``scope="global"`` ranks all prunable weights against one threshold; ``"layer"`` prunes
    each weight by its own. ``rates`` gives per-role fractions (``{"conv": 0.15, "fc": 0.2,
    "output": 0.1}``, the lottery-ticket Conv-6 setting); roles not listed use ``fraction``,
    and with global scope each listed role gets its own threshold. ``exclude`` names weights
    (``"fc.weight"``), modules and their subtrees (``"fc"``, ``"classifier"``) or roles
    (``"output"``) that this step leaves as they are. Weights pruned by ``masks`` stay pruned.
    Returns new masks; ``model`` and ``masks`` are not modified.
    """
    _check_fraction(fraction, "fraction")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    rates = dict(rates or {})
    unknown = sorted(set(rates) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown roles {unknown} in rates; roles are {', '.join(ROLES)}")
    for role, rate in rates.items():
        _check_fraction(rate, f"rates[{role!r}]")
    weights = prunable(model)
    if not weights:
        raise ValueError("the model has no Conv2d or Linear weights to prune")
    current = _checked(weights, masks or {})
    role_of = roles(model)
    excluded = _excluded(role_of, exclude)
    if len(excluded) == len(weights):
        raise ValueError("every prunable weight is excluded; nothing to prune")

    groups: dict[str | None, tuple[float, list[str]]] = {}
    for name in weights:
        if name in excluded:
            continue
        role = role_of[name]
        if scope == "layer":
            key: str | None = name
        else:  # one threshold per role with its own rate, one for all the others
            key = f"role:{role}" if role in rates else None
        groups.setdefault(key, (rates.get(role, fraction), []))[1].append(name)

    result: Masks = dict(current)
    for rate, names in groups.values():
        group_weights = [weights[name] for name in names]
        group_masks = [
            current[name] if name in current else torch.ones_like(weights[name], dtype=torch.bool)
            for name in names
        ]
        result.update(zip(names, _select(group_weights, group_masks, rate), strict=True))
    return result


def shuffle(masks: Mapping[str, Tensor], *, seed: int) -> Masks:
    """Random masks with each layer's sparsity: the lottery-ticket paper's random-pruning
    control (open_lth's layer-wise random pruning).

    Args:
        masks: masks to match (:data:`Masks`).
        seed: the seed of the draw; each layer draws from it and its place in ``masks``.

    Returns:
        New masks of the same shapes, each keeping exactly as many weights as the one it
        matches, at uniformly random positions.
    """
    drawn: Masks = {}
    for index, (name, mask) in enumerate(masks.items()):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        order = torch.randperm(mask.numel(), generator=generator)
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[order[: int(mask.sum())]] = True
        drawn[name] = flat.view(mask.shape).to(mask.device)
    return drawn


def excluded(model: nn.Module, exclude: Iterable[str] = ()) -> set[str]:
    """The prunable weights of ``model`` that ``exclude`` (roles or names, as for
    :func:`prune`) keeps out of pruning."""
    return _excluded(roles(model), exclude)


def apply(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Zero the pruned weights of ``model`` in place.

    Call it after every optimizer step: Adam moments, momentum and weight decay move pruned
    entries away from zero otherwise. A mask on another device than its weight is moved once
    and stored back into ``masks`` (when it is a mutable mapping), so later calls are cheap.
    """
    weights = prunable(model)
    _checked(weights, masks)
    with torch.no_grad():
        for name, mask in masks.items():
            weight = weights[name]
            if mask.device != weight.device:
                mask = mask.to(weight.device)
                if isinstance(masks, dict):
                    masks[name] = mask
            weight.mul_(mask)


def capture(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of the full ``state_dict`` (a rewind point: θ0, θ_k, post-ALDS)."""
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def rewind(model: nn.Module, state: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> None:
    """Load ``state`` (every parameter and buffer: biases, BatchNorm statistics) and mask it.

    ``state`` must have exactly the model's keys and shapes; otherwise nothing is loaded.
    """
    _checked(prunable(model), masks)
    own = model.state_dict()
    problems = [f"missing {key}" for key in own if key not in state]
    problems += [f"unexpected {key}" for key in state if key not in own]
    problems += [
        f"{key} has shape {tuple(state[key].shape)}, the model {tuple(value.shape)}"
        for key, value in own.items()
        if key in state and state[key].shape != value.shape
    ]
    if problems:
        shown = "; ".join(problems[:4]) + ("; ..." if len(problems) > 4 else "")
        raise ValueError(f"the rewind state does not fit this model: {shown}")
    model.load_state_dict(state)
    apply(model, masks)


def load(model: nn.Module, state: Mapping[str, Tensor]) -> Masks:
    """Masks from a saved mapping, checked against ``model`` and put on its weights' devices.

    ``state`` is what ``torch.load(path, map_location="cpu", weights_only=True)`` returns for
    masks written by ``torch.save(masks, path)``: a run resumes at its last finished cycle.
    """
    weights = prunable(model)
    return {name: mask.to(weights[name].device) for name, mask in _checked(weights, state).items()}


def sparsity(model: nn.Module, masks: Mapping[str, Tensor] | None = None) -> dict:
    """Alive weights and sparsity per prunable weight (``layers``) and in total.

    A weight counts as alive where its mask is ``True``; weights without a mask count their
    nonzero entries, so ``sparsity(model)`` measures a model with no masks at all.
    See :func:`compression.metrics.sparsity` for the layout.
    """
    weights = prunable(model)
    masks = _checked(weights, masks or {})
    return metrics.sparsity({name: masks.get(name, weight) for name, weight in weights.items()})


# --------------------------------------------------------------------------- internals


def _layers(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    ]


def _weight_name(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def _check_fraction(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ValueError(f"{what} must lie strictly between 0 and 1, got {value!r}")


def _checked(weights: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Masks:
    """``masks`` as a dict after checking that they belong to the model of ``weights``."""
    if not isinstance(masks, Mapping):
        raise ValueError(f"masks must be a mapping of name to bool tensor, got {type(masks)}")
    unknown = [name for name in masks if name not in weights]
    if unknown:
        known = ", ".join(list(weights)[:4])
        raise ValueError(
            f"masks do not fit this model: it has no prunable weight {unknown[:4]} "
            f"(its prunable weights are {known}, ...); masks of another architecture?"
        )
    for name, mask in masks.items():
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            kind = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask '{name}' must be a bool tensor, got {kind}")
        if mask.shape != weights[name].shape:
            raise ValueError(
                f"masks do not fit this model: mask '{name}' has shape {tuple(mask.shape)}, "
                f"the weight {tuple(weights[name].shape)}; masks of another architecture?"
            )
    return dict(masks)


def _excluded(role_of: Mapping[str, str], exclude: Iterable[str]) -> set[str]:
    entries = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    chosen: set[str] = set()
    for entry in entries:
        hits = {
            name
            for name, role in role_of.items()
            if entry in (role, name) or name.startswith(f"{entry}.")
        }
        if not hits:
            names = ", ".join(list(role_of)[:4])
            raise ValueError(
                f"exclude entry {entry!r} matches no prunable weight; give a role "
                f"({', '.join(ROLES)}), a module or a weight name (e.g. {names})"
            )
        chosen |= hits
    return chosen


def _keep_count(total: int, alive: int, fraction: float) -> int:
    """Weights of a group of ``total`` that survive one step at ``fraction`` from ``alive``.

    On the schedule (``alive == round(total * q**L)``, ``q = 1 - fraction``) the next count is
    ``round(total * q**(L + 1))``: counts stay within one weight of ``total * q**L`` instead
    of drifting with each step's rounding. Below ``1 / fraction`` weights two levels can
    share a count; the later one is taken so that every step makes progress (the count then
    runs ahead of the ideal by up to a few weights). Off the schedule (another rate was used
    before) ``fraction`` of the alive weights are removed.
    """
    if alive == 0:
        return 0
    q = 1.0 - fraction
    level = math.log(alive / total) / math.log(q)
    levels = [
        candidate
        for candidate in range(max(0, math.floor(level) - 2), math.ceil(level) + 3)
        if round(total * q**candidate) == alive
    ]
    if levels:
        return round(total * q ** (max(levels) + 1))
    return round(alive * q)


def _select(weights: list[Tensor], masks: list[Tensor], fraction: float) -> list[Tensor]:
    """New masks of one group: the smallest alive ``|w|`` pruned down to the scheduled count."""
    alive_counts = [int(mask.sum()) for mask in masks]
    total = sum(mask.numel() for mask in masks)
    alive = sum(alive_counts)
    drop = alive - _keep_count(total, alive, fraction)
    if drop <= 0:
        return [mask.to(weight.device) for weight, mask in zip(weights, masks, strict=True)]
    with torch.no_grad():
        scores = torch.cat(
            [
                weight.detach().abs().flatten()[mask.to(weight.device).flatten()]
                for weight, mask in zip(weights, masks, strict=True)
            ]
        )
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("weights contain NaN or infinite values; cannot rank them by magnitude")
    threshold = scores.kthvalue(drop).values
    below = scores < threshold
    ties = scores == threshold
    # Exactly `drop` weights go: all below the threshold, then the first tied ones in order.
    dropped = below | (ties & (ties.cumsum(0) <= drop - int(below.sum())))
    out = []
    offset = 0
    for weight, mask, count in zip(weights, masks, alive_counts, strict=True):
        old = mask.to(weight.device).flatten()
        new = old.clone()
        new[old] = ~dropped[offset : offset + count]
        out.append(new.view_as(weight))
        offset += count
    return out
