"""Conditions: a rule and the models it trains stacked (one seed and one label set per
model), built for a single rule, a window grid or a λ grid, and named for tables and
progress lines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bplambda.labels import DEFAULT_VARIANT
from bplambda.rules import Rule, make_rule

FIVE_SEEDS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class Condition:
    """A rule and the stacked models it trains: one seed and one label set per model.

    A label set holds :data:`bplambda.labels.LABELS`: what names the model in the tables."""

    rule: Rule
    seeds: tuple[int, ...]
    labels: tuple[dict, ...]


def _grid_condition(
    values: Sequence[float], seeds: Sequence[int], rule_for: Callable[[tuple], Rule],
    label: Callable[[float], dict],
) -> Condition:  # fmt: skip
    """Every value × every seed as ONE stacked model (``K = len(values)·len(seeds)``):
    ``rule_for(one value per model)`` and ``label(value)`` for each model's rows."""
    models = [(value, seed) for value in values for seed in seeds]
    rule = rule_for(tuple(value for value, _ in models))
    return Condition(rule, tuple(s for _, s in models), tuple(label(v) for v, _ in models))


def bp_lambda_condition(
    lambdas: Sequence[float], seeds: Sequence[int], gamma: float, scale: float = 1.0
) -> Condition:
    """All λ values × all seeds as ONE stacked model (``K = len(λ)·len(seeds)``)."""
    return _grid_condition(
        [float(lmbda) for lmbda in lambdas], seeds,
        lambda per_model: make_rule("bp_lambda", lmbda=per_model, gamma=gamma, scale=scale),
        lambda lmbda: {"condition": f"BP({lmbda:g})", "family": "bp_lambda", "lmbda": lmbda,
                       "n": np.nan, "variant": DEFAULT_VARIANT},
    )  # fmt: skip


def window_condition(
    name: str, windows: Sequence[int], seeds: Sequence[int], **options: object
) -> Condition:
    """TBPTT(n) or SG(n) (``name``) for all windows × all seeds as ONE stacked model, each
    model with its own window (one window for all where the grid has one)."""

    def rule_for(per_model: tuple) -> Rule:
        window = per_model if len(set(per_model)) > 1 else per_model[0]
        return make_rule(name, window=window, **options)

    return _grid_condition(
        windows, seeds, rule_for,
        lambda n: {"condition": f"{DISPLAY_NAMES[name]}({n})", "family": name, "lmbda": np.nan,
                   "n": n, "variant": DEFAULT_VARIANT},
    )  # fmt: skip


DISPLAY_NAMES = {"bptt": "BPTT", "oracle": "oracle", "tbptt": "TBPTT", "sg": "SG",
                 "eprop": "e-prop", "rflo": "RFLO", "mdgl": "MDGL"}  # fmt: skip


def single_condition(name: str, seeds: Sequence[int], **options: object) -> Condition:
    """A rule without a grid (not BP(λ), TBPTT or SG), seeds stacked; its name in tables is
    :data:`DISPLAY_NAMES`' (an MDGL variant other than the exact one: ``MDGL-type``)."""
    display, variant = DISPLAY_NAMES[name], DEFAULT_VARIANT
    if options.get("variant", "cell_specific") != "cell_specific":
        display, variant = f"{display}-type", str(options["variant"])
    label = {"condition": display, "family": name, "lmbda": np.nan, "n": np.nan,
             "variant": variant}  # fmt: skip
    return Condition(make_rule(name, **options), tuple(seeds), tuple(label for _ in seeds))


def condition_title(condition: Condition) -> str:
    """A condition's name in progress lines: its first label, ``…`` where it has several."""
    names = sorted({label["condition"] for label in condition.labels})
    return names[0] if len(names) == 1 else names[0] + "…"
