"""The grid of rules that the seq-MNIST and copy-repeat notebooks run: which conditions a
config's ``rules``, windows, λ values and LSTM modes make, and how a worker pool names and
orders them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bplambda.cells import LSTM_MODES
from bplambda.errors import refuse
from bplambda.experiments.conditions import (
    Condition,
    bp_lambda_condition,
    condition_title,
    single_condition,
    window_condition,
)
from bplambda.rules import make_rule

GRID_RULES = ("bptt", "tbptt", "sg", "bp_lambda", "oracle")
"""The rules a seq-MNIST or copy-repeat grid can run (``rules``): BPTT, TBPTT(n) and SG(n) for
every window n, BP(λ) for every λ (one stacked model per LSTM mode), and the oracle."""


class GridConfig(Protocol):
    """What :func:`grid_conditions` reads from a seq-MNIST or copy-repeat config."""

    rules: tuple[str, ...]
    seeds: tuple[int, ...]
    windows: tuple[int, ...]
    lambdas: tuple[float, ...]
    lstm_modes: tuple[str, ...]
    gamma: float
    scale: float
    implementation: str


GRID_NEEDS = {"windows": {"tbptt", "sg"}, "lambdas": {"bp_lambda"}, "lstm_modes": {"bp_lambda"}}
"""The lists a grid's rules need (a rule with an empty list would silently not run)."""


def check_grid(
    cfg: object,
    runs: Sequence[str] = GRID_RULES,
    needs: dict[str, set[str]] = GRID_NEEDS,
    elsewhere: str = "Liu et al.'s rules run in notebook 05",
) -> None:
    """Refuse a config whose ``rules`` name one this notebook does not ``runs``, or need a
    list of ``needs`` that is empty (e.g. ``tbptt`` without windows)."""
    others = sorted(set(cfg.rules) - set(runs))
    if others:
        raise refuse("rules", cfg.rules, f"this notebook runs rules from {list(runs)}, "
                     f"not {others} ({elsewhere})")  # fmt: skip
    for name, rules in needs.items():
        used = sorted(rules & set(cfg.rules))
        if used and not getattr(cfg, name):
            raise refuse(name, getattr(cfg, name), f"rules {used} need at least one value")


def grid_conditions(cfg: GridConfig) -> list[tuple[Condition, str]]:
    """(condition, cell name) pairs in the order of :data:`GRID_RULES`; seeds stacked, the
    TBPTT(n) and SG(n) window grids × seeds as one stacked model each, and BP(λ)'s λ grid ×
    seeds as one stacked model per LSTM mode (``" faithful"`` labels the
    official code's quirks). Every other rule runs the exact LSTM."""
    pairs: list[tuple[Condition, str]] = []
    rules = set(cfg.rules)
    if "bptt" in rules:
        pairs.append((single_condition("bptt", cfg.seeds), "lstm"))
    if "tbptt" in rules:
        pairs.append((window_condition("tbptt", cfg.windows, cfg.seeds), "lstm"))
    if "sg" in rules:
        sg = window_condition("sg", cfg.windows, cfg.seeds, gamma=cfg.gamma, scale=cfg.scale)
        pairs.append((sg, "lstm"))
    for mode in cfg.lstm_modes if "bp_lambda" in rules else ():
        grid = bp_lambda_condition(cfg.lambdas, cfg.seeds, cfg.gamma, cfg.scale)
        rule = make_rule(
            "bp_lambda", lmbda=grid.rule.lmbda, gamma=cfg.gamma, scale=cfg.scale,
            implementation=cfg.implementation,
        )  # fmt: skip
        suffix = "" if mode == "exact" else f" {mode}"
        labels = tuple({**label, "condition": label["condition"] + suffix} for label in grid.labels)
        pairs.append((Condition(rule, grid.seeds, labels), LSTM_MODES[mode]))
    if "oracle" in rules:
        pairs.append((single_condition("oracle", cfg.seeds), "lstm"))
    return pairs


def grid_title(pair: tuple[Condition, str]) -> str:
    """A (condition, cell name) unit of a grid, by its condition's name."""
    return condition_title(pair[0])


def grid_cost(pair: tuple[Condition, str]) -> float:
    """A grid unit's rough cost: its stacked models, twice for BP(λ), whose synthesiser
    products cost about as much as the rest of its update."""
    condition = pair[0]
    return len(condition.seeds) * (2 if condition.labels[0]["family"] == "bp_lambda" else 1)
