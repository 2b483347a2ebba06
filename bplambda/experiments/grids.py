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


def rule_conditions(cfg: GridConfig, order: Sequence[str]) -> list[tuple[Condition, str]]:
    """(condition, LSTM mode) for every rule of ``cfg.rules``, in ``order``, seeds stacked: the
    TBPTT(n) and SG(n) window grids × seeds as one stacked model each; BP(λ)'s λ grid × seeds
    as one stacked model per mode of ``cfg.lstm_modes`` (``" faithful"`` labels the official
    code's quirks; a config without modes: the exact one); MDGL once per variant of
    ``cfg.mdgl_variants``; every other rule alone. The one builder of every notebook's grid
    (the mode matters only where the cell is an LSTM)."""
    pairs: list[tuple[Condition, str]] = []
    for name in (rule for rule in order if rule in cfg.rules):
        if name in ("tbptt", "sg"):
            options = {"gamma": cfg.gamma, "scale": cfg.scale} if name == "sg" else {}
            pairs.append((window_condition(name, cfg.windows, cfg.seeds, **options), "exact"))
        elif name == "bp_lambda":
            pairs += [(_bp_lambda_grid(cfg, mode), mode)
                      for mode in getattr(cfg, "lstm_modes", ("exact",))]  # fmt: skip
        elif name == "mdgl":
            pairs += [(single_condition("mdgl", cfg.seeds, variant=variant), "exact")
                      for variant in cfg.mdgl_variants]  # fmt: skip
        else:
            pairs.append((single_condition(name, cfg.seeds), "exact"))
    return pairs


def _bp_lambda_grid(cfg: GridConfig, mode: str) -> Condition:
    """BP(λ) for every λ × seed as one stacked model, in LSTM ``mode`` (a suffix on its labels
    but for the exact one), with the config's implementation where it names one."""
    grid = bp_lambda_condition(cfg.lambdas, cfg.seeds, cfg.gamma, cfg.scale)
    rule = make_rule(
        "bp_lambda", lmbda=grid.rule.lmbda, gamma=cfg.gamma, scale=cfg.scale,
        implementation=getattr(cfg, "implementation", "lambda_return"),
    )  # fmt: skip
    if mode == "exact":
        return Condition(rule, grid.seeds, grid.labels)
    labels = tuple({**label, "condition": f"{label['condition']} {mode}", "variant": mode}
                   for label in grid.labels)  # fmt: skip
    return Condition(rule, grid.seeds, labels)


def grid_conditions(cfg: GridConfig) -> list[tuple[Condition, str]]:
    """Notebooks 03-04's (condition, cell name) pairs: :func:`rule_conditions` in the order of
    :data:`GRID_RULES`, every rule on the exact LSTM but BP(λ) in its modes."""
    return [(condition, LSTM_MODES[mode]) for condition, mode in rule_conditions(cfg, GRID_RULES)]


def grid_condition_list(cfg: GridConfig) -> list[Condition]:
    """Notebooks 03-04's conditions, without their cells."""
    return [condition for condition, _ in grid_conditions(cfg)]


def grid_title(pair: tuple[Condition, str]) -> str:
    """A (condition, cell name) unit of a grid, by its condition's name."""
    return condition_title(pair[0])


def grid_cost(pair: tuple[Condition, str]) -> float:
    """A grid unit's rough cost: its stacked models, twice for BP(λ), whose synthesiser
    products cost about as much as the rest of its update."""
    condition = pair[0]
    return len(condition.seeds) * (2 if condition.labels[0]["family"] == "bp_lambda" else 1)
