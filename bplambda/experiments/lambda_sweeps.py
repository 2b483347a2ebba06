"""Notebook 02: λ × sequence length on the toy task (fixed RNN), with n-step SG on the same
axes and a spectral-radius sweep: config, runs, tables and claims."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from bplambda import checks
from bplambda.analysis import (
    ALIGNMENT,
    ALIGNMENTS,
    APPLIED,
    FINALS,
    both_finals,
    bp_label,
    final_batch,
    final_values,
    mean_over_steps,
    per_seed,
    summarise_finals,
)
from bplambda.checks import checked
from bplambda.experiments.conditions import FIVE_SEEDS, bp_lambda_condition, window_condition
from bplambda.experiments.options import ExperimentConfig, shardable
from bplambda.experiments.sg_windows import (
    at_boundaries,
    bootstraps,
    grows,
    smallest_matching_window,
    window_table,
)
from bplambda.experiments.toy_runs import ToyRun, alignment_train_config, run_on_toy
from bplambda.labels import condition_order
from bplambda.profiles import configure
from bplambda.verdicts import all_positive, increasing, interval
from bplambda.wording import counted


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """λ × sequence length on the toy task (fixed RNN), with n-step SG on the same axes.

    Per T, all λ values and seeds train as one stacked model. ``gamma`` is a parameter
    (the paper's toy runs use γ = 1). ``spectral_radii``: the same sweep again with the fixed
    RNN's recurrent weights rescaled to each spectral radius ρ (the paper's initialisation has
    ρ ≈ 0.58: it is contractive and the true gradient vanishes toward early steps), for λ in
    ``radius_lambdas`` and every SG(n): does BP(λ) gain at long T where long-range credit
    exists?
    """

    NOTEBOOK: ClassVar[str] = "02_lambda_sweeps"
    profile: str
    seeds: tuple[int, ...] = checked(checks.seeds)
    epochs: int = checked(checks.positive_int)
    seq_lens: tuple[int, ...] = checked(checks.positive_ints, (10, 20, 40, 60))
    lambdas: tuple[float, ...] = checked(
        checks.lambdas, tuple(round(0.1 * i, 1) for i in range(11))
    )
    windows: tuple[int, ...] = checked(checks.positive_ints, (1, 2, 3, 5, 10))
    gamma: float = checked(checks.gamma, 1.0)
    batches_per_epoch: int = checked(checks.positive_int, 100)
    batch_size: int = checked(checks.positive_int, 10)
    hidden_size: int = checked(checks.positive_int, 30)
    lr_synthesiser: float = checked(checks.non_negative, 1e-4)
    log_every: int = checked(checks.positive_int, 100)
    spectral_radii: tuple[float, ...] = checked(checks.positive_reals, (0.9, 1.0))
    radius_lambdas: tuple[float, ...] = checked(checks.lambdas, (0.0, 0.5, 1.0))


DEFAULTS = {
    "smoke": {"seeds": (0, 1), "epochs": 1, "batches_per_epoch": 20, "seq_lens": (5, 10),
              "lambdas": (0.0, 1.0), "windows": (1, 3), "log_every": 10, "spectral_radii": (1.0,),
              "radius_lambdas": (1.0,), "progress": False},
    "quick": {"seeds": FIVE_SEEDS, "epochs": 5, "log_every": 20},
    "paper": {"seeds": FIVE_SEEDS, "epochs": 10, "log_every": 20},
}  # fmt: skip


def config(profile: str = "quick", **overrides: object) -> Config:
    """The λ-sweep config: profile defaults, then the overrides that are not None."""
    return configure(Config, DEFAULTS, profile, **overrides)


@shardable("run_lambda_sweep")
def run(cfg: Config) -> pd.DataFrame:
    """For every T: BP(λ) over the λ grid (one stacked run) and SG(n) for every n, with the
    paper's initialisation; then, for every spectral radius of ``spectral_radii``, BP(λ) for
    ``radius_lambdas`` and SG(n) again (``rho`` names it; NaN: the paper's initialisation)."""
    batches = cfg.epochs * cfg.batches_per_epoch
    train_config = alignment_train_config(cfg, batches, cfg.lr_synthesiser)
    sg = window_condition("sg", cfg.windows, cfg.seeds, gamma=cfg.gamma)
    paper = [bp_lambda_condition(cfg.lambdas, cfg.seeds, cfg.gamma), sg]
    rescaled = [bp_lambda_condition(cfg.radius_lambdas, cfg.seeds, cfg.gamma), sg]
    runs = [ToyRun(c, T) for T in cfg.seq_lens for c in paper]
    runs += [
        ToyRun(c, T, radius)
        for radius in cfg.spectral_radii
        for T in cfg.seq_lens
        for c in rescaled
    ]
    return run_on_toy(runs, cfg, train_config)


# ----------------------------------------------------------------------------- tables, claims


def rho_label(rho: float) -> str:
    """``"init"`` for the paper's initialisation (``rho`` NaN), else ``"ρ = 0.9"``."""
    return "init (ρ ≈ 0.58)" if pd.isna(rho) else f"ρ = {rho:g}"


def tables(sweep: pd.DataFrame, cfg: Config) -> dict[str, pd.DataFrame]:
    """``final_by_seed`` (each model's last-epoch mean and last batch), ``final`` (over seeds),
    ``by_t`` (per step at the last batch: the alignment and the true gradient's norm),
    ``gradient_ratio`` (per ρ, T and seed: ‖∂L_{>t}/∂s_t‖ at t = 1 over t = T − 1, the last step
    with a future), ``lead`` (per ρ, T and seed: BP(max λ) minus the best SG(n) that
    bootstraps, on the alignment where each applies g, paired by seed: the same seed is the
    same fixed RNN), ``windows`` (per n and T: which boundaries bootstrap), ``boundaries`` (g's
    alignment at SG(n)'s bootstrapped boundaries, SG(n) and BP(max λ) at the same states) and
    ``n_star`` (per ρ and T: bounds of the smallest window whose learning signal matches
    BP(max λ)'s)."""
    by_batch = mean_over_steps(sweep)
    finals = final_values(by_batch, cfg.batches_per_epoch)
    finals = finals[finals.metric.isin(ALIGNMENTS)]
    keys = ["rho", "condition", "family", "lmbda", "n", "variant", "T", "metric"]
    last = final_batch(sweep)
    by_t = last[(last.t >= 1) & (last.t < last["T"])]
    norms = by_t[(by_t.metric == "future_gradient_norm") & (by_t.condition == bp_label(max(
        cfg.lambdas)))]  # fmt: skip
    first = norms[norms.t == 1].set_index(["rho", "T", "seed"]).value
    latest = norms[norms.t == norms["T"] - 1].set_index(["rho", "T", "seed"]).value
    ratio = (first / latest).rename("value").reset_index()
    top = bp_label(max(cfg.lambdas))
    return {
        "final_by_seed": finals,
        "final": summarise_finals(finals, keys),
        "by_t": by_t[by_t.metric.isin([ALIGNMENT, APPLIED, "future_gradient_norm"])],
        "gradient_ratio": ratio.assign(rho_label=ratio.rho.map(rho_label)),
        "lead": _leads(finals, max(cfg.lambdas)),
        "windows": window_table(cfg.windows, cfg.seq_lens),
        "boundaries": _at_boundaries(sweep, top, cfg),
        "n_star": _n_star(finals, top, cfg.windows),
    }


def _last_epoch_per_step(sweep: pd.DataFrame, batches_per_epoch: int) -> pd.DataFrame:
    """Per (ρ, T, condition, seed, step): ``value``, the mean over the last epoch's logged
    batches (one noisy batch does not decide)."""
    last = sweep.groupby(["rho", "T"], dropna=False).batch.transform("max")
    recent = sweep[(sweep.batch > last - batches_per_epoch) & (sweep.t >= 1)]
    keys = ["rho", "T", "condition", "family", "n", "seed", "t", "metric"]
    return recent.groupby(keys, dropna=False, as_index=False).value.mean()


def _at_boundaries(sweep: pd.DataFrame, top: str, cfg: Config) -> pd.DataFrame:
    """Per ρ, T, window n that bootstraps at T, and seed: g's alignment at SG(n)'s
    bootstrapped boundaries for SG(n) and for ``top`` at the same states
    (:func:`~bplambda.experiments.sg_windows.at_boundaries`)."""
    per_step = _last_epoch_per_step(sweep[sweep.metric == ALIGNMENT], cfg.batches_per_epoch)
    frames = [
        at_boundaries(group, top, n, T).assign(rho=rho, T=T, n=n)
        for (rho, T), group in per_step.groupby(["rho", "T"], dropna=False)
        for n in cfg.windows if bootstraps(T, n)
    ]  # fmt: skip
    table = pd.concat(frames, ignore_index=True)
    return table.assign(rho_label=table.rho.map(rho_label))[
        ["rho", "rho_label", "T", "n", "seed", "sg", "bp", "difference"]]  # fmt: skip


def _n_star(finals: pd.DataFrame, top: str, windows: tuple[int, ...]) -> pd.DataFrame:
    """Per ρ and T: the bounds of n*, the smallest SG window whose learning signal matches
    ``top``'s (:func:`~bplambda.experiments.sg_windows.smallest_matching_window`)."""
    rows = []
    for (rho, T), group in finals.groupby(["rho", "T"], dropna=False):
        low, high = smallest_matching_window(group, top, windows)
        rows.append({"rho": rho, "rho_label": rho_label(rho), "T": T, "n_star_low": low,
                     "n_star_high": high})  # fmt: skip
    return pd.DataFrame(rows)


def _leads(finals: pd.DataFrame, top: float) -> pd.DataFrame:
    """Per (ρ, T) and seed: BP(top) − the best SG(n) (by mean) on ``alignment_applied``, among
    the windows with a bootstrapped boundary at T; both definitions of the final value
    (``value``, ``last_batch``)."""
    applied = finals[finals.metric == APPLIED]
    rows = []
    for (rho, T), group in applied.groupby(["rho", "T"], dropna=False):
        sg = group[group.family == "sg"].dropna(subset=["value"])
        sg = sg[[bootstraps(T, int(n)) for n in sg.n]]  # a window that never bootstraps is BPTT
        if sg.empty:
            continue
        best = sg.groupby("condition").value.mean().idxmax()
        bp = group[group.condition == bp_label(top)].set_index("seed")
        other = group[group.condition == best].set_index("seed")
        for column in FINALS:
            lead = (bp[column] - other[column]).rename("value").reset_index()
            rows.append(lead.assign(rho=rho, T=T, best_sg=best, best_n=other.n.iloc[0],
                                    final=column))  # fmt: skip
    columns = ["seed", "value", "rho", "T", "best_sg", "best_n", "final"]
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
    return table.assign(rho_label=table.rho.map(rho_label))  # none where every SG(n) diverged


NO_SG_LEFT = "none (no SG(n) that bootstraps has a seed left)"
"""What a comparison with the best SG(n) shows where every SG(n) model diverged."""


def claims(tables: dict[str, pd.DataFrame], cfg: Config) -> list[dict]:
    """Does BP(λ)'s advantage over n-step SG grow with the sequence length, with the paper's
    initialisation and where the fixed RNN keeps long-range gradients (ρ → 1)?"""
    finals, leads = tables["final_by_seed"], tables["lead"]
    top, low = bp_label(max(cfg.lambdas)), bp_label(min(cfg.lambdas))
    short, long = min(cfg.seq_lens), max(cfg.seq_lens)
    found = []
    for rho in [np.nan, *cfg.spectral_radii]:
        at_rho = _at_rho(leads, rho)

        def lead(T: int, column: str, at_rho: pd.DataFrame = at_rho) -> pd.Series:
            return at_rho[(at_rho["T"] == T) & (at_rho.final == column)].set_index("seed").value

        shown = ", ".join(
            f"T={T}: {interval(lead(T, 'value').to_numpy()).text()} vs "
            f"{at_rho[at_rho['T'] == T].best_sg.iloc[0]}"
            for T in cfg.seq_lens if (at_rho["T"] == T).any()
        ) or NO_SG_LEFT  # fmt: skip
        ratios = tables["gradient_ratio"]
        ratios = _at_rho(ratios, rho)
        vanish = ratios[ratios["T"] == long].value.median()
        paper_claim = pd.isna(rho)
        found.append({
            "claim": f"{top} beats the best n-step SG that bootstraps by more at longer T "
                     f"({rho_label(rho)}; alignment where each rule applies g)"
                     + (" (\"particularly suited for longer timescales\")" if paper_claim
                        else ": where the network keeps long-range gradients"),
            "paper": "yes (qualitative)" if paper_claim else "not studied",
            "official_code": "not run",
            "bplambda": f"lead of {top}: {shown}. ‖∂L_>t/∂s_t‖ at t = 1 / t = T−1 at T = "
                        f"{long}: {vanish:.1e} (median over seeds)",
            "verdict": both_finals(lambda c, lead=lead: increasing([lead(short, c),
                                                                    lead(long, c)])),
        })  # fmt: skip
        found += _bias_claims(tables, top, rho, cfg)
    paper_rows = finals[finals.rho.isna() & (finals.metric == ALIGNMENT)]
    per_T = {}
    for T in cfg.seq_lens:
        at_T = paper_rows[paper_rows["T"] == T]
        per_T[T] = both_finals(
            lambda c, at_T=at_T: increasing(
                [per_seed(at_T, c, condition=low), per_seed(at_T, c, condition=top)]
            )
        )
    verdicts = set(per_T.values())
    overall = (verdicts.pop() if len(verdicts) == 1 else
               "NOT reproduced" if "NOT reproduced" in verdicts else
               f"inconclusive ({counted(len(cfg.seeds), 'seeds')})")  # fmt: skip
    found.append({
        "claim": f"{top} aligns better than {low} at every T",
        "paper": "yes (qualitative)",
        "official_code": "T = 10: 0.93 ± 0.06 vs 0.28 ± 0.11 (5 seeds)",
        "bplambda": ", ".join(f"T={T}: {v}" for T, v in per_T.items()),
        "verdict": overall,
    })  # fmt: skip
    return [{"experiment": "λ sweep", **c} for c in found]


BY_LENGTH = {APPLIED: "where applied", ALIGNMENT: "every state"}
"""The alignments of the summary's table by T, as its columns name them: where each rule
applies g (the comparison) first, g at every state beside it."""


def by_length_table(final: pd.DataFrame) -> pd.DataFrame:
    """Mean final alignment of g(s_t) with the paper's initialisation: one row per condition
    (ordered), per T a column where each rule applies g (``alignment_applied``: every state for
    BP(λ), the chunk ends for SG(n); the fair comparison) and, labelled ``every state``, a
    column of g at every state (``alignment_synthetic``: SG(n)'s g there is never applied, so
    it does not measure SG) (:data:`BY_LENGTH`)."""
    paper = final[final.metric.isin(BY_LENGTH) & final.rho.isna()]
    table = paper.pivot_table(index="condition", columns=["metric", "T"], values="mean")
    columns = [(metric, T) for metric in BY_LENGTH for T in sorted(set(paper["T"]))]
    table = table.reindex(index=condition_order(paper), columns=columns)  # blank: all diverged
    table.columns = [f"T={T}, {BY_LENGTH[metric]}" for metric, T in columns]
    return table.reset_index()


def _bias_claims(tables: dict[str, pd.DataFrame], top: str, rho: float, cfg: Config) -> list[dict]:
    """At ρ: where the bias lives (g at SG(n)'s bootstrapped boundaries vs ``top``'s g at the
    same states, against the SG window the lead uses) and whether n* grows with T."""
    leads, boundaries, n_star = (_at_rho(tables[name], rho) for name in
                                 ("lead", "boundaries", "n_star"))  # fmt: skip
    shown, differences = [], []
    for T in cfg.seq_lens:
        best = leads[leads["T"] == T].best_n
        if best.empty:
            continue
        n = int(best.iloc[0])
        difference = boundaries[(boundaries["T"] == T) & (boundaries.n == n)].difference
        shown.append(f"T={T} vs SG({n}): {interval(difference).text()}")
        differences.append(difference.to_numpy())
    bounds = {T: (low, high) for T, low, high in
              n_star[["T", "n_star_low", "n_star_high"]].itertuples(index=False)}  # fmt: skip
    short, long = min(cfg.seq_lens), max(cfg.seq_lens)
    return [{
        "claim": f"{top}'s g aligns better than SG(n)'s at SG(n)'s bootstrapped boundaries, "
                 f"the same states ({rho_label(rho)}; the best SG(n) that bootstraps)",
        "paper": "not studied (where the bias lives)",
        "official_code": "not run",
        "bplambda": f"{top} − SG(n), paired by seed: "
                    + ("; ".join(shown) or NO_SG_LEFT),
        "verdict": all_positive(differences),
    }, {
        "claim": f"n*(T), the smallest SG window whose learning signal matches {top}'s, grows "
                 f"with T ({rho_label(rho)})",
        "paper": "not studied (\"particularly suited for longer timescales\")",
        "official_code": "not run",
        "bplambda": "n* between " + ", ".join(
            f"T={T}: [{_window_text(low, cfg.windows)}, {_window_text(high, cfg.windows)}]"
            for T, (low, high) in bounds.items()) + f" (from 95% intervals; windows "
            f"{list(cfg.windows)})",
        "verdict": grows(bounds[short], bounds[long]),
    }]  # fmt: skip


def _at_rho(table: pd.DataFrame, rho: float) -> pd.DataFrame:
    """The rows of ``table`` at spectral radius ``rho`` (NaN: the paper's initialisation)."""
    return table[table.rho.isna() if pd.isna(rho) else table.rho == rho]


def _window_text(n: float, windows: tuple[int, ...]) -> str:
    return f"> {max(windows)}" if n == np.inf else "n/a" if np.isnan(n) else f"{n:g}"
