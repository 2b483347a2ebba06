"""The README's "What reproduces" tables, generated from the committed ``claims.csv`` files.

One row per headline claim of the two papers (:data:`HEADLINES`), one more table for the
package's extensions (:data:`EXTENSIONS`): the claim with its paper section, the strongest run
that decided it (profile, seeds, budget as a share of the paper's, model size where smaller),
its verdict there (and quick's beside it, as indicative; and how many conditions were still
improving when that run's budget ended, where it says), the effect with its interval as the run
wrote it, told briefly (:func:`effect_cell`), and the figure that shows it. Nothing here is
typed by hand but the choice of claims: numbers and verdicts come from
:func:`bplambda.results.claims_by_budget`, so the README cannot drift from ``results/``.
``python -m bplambda.what_reproduces`` rewrites the region between :data:`START` and
:data:`END` of ``README.md``; ``make reproduce`` does it after every run into the committed
results.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bplambda.experiments import (
    EXPERIMENTS,
    copy_repeat_curriculum,
    generalisation,
    lambda_sweeps,
    sequential_mnist,
    toy_alignment,
)
from bplambda.paths import project_path
from bplambda.results import claims_by_budget, markdown_table, write_text
from bplambda.wording import counted

START = "<!-- what-reproduces:start -->"
END = "<!-- what-reproduces:end -->"

BP_LAMBDA = "docs/paper-bp-lambda.md"
LIU = "docs/paper-liu2022.md"

TOY = toy_alignment.Config.NOTEBOOK
SWEEPS = lambda_sweeps.Config.NOTEBOOK
MNIST = sequential_mnist.Config.NOTEBOOK
COPY = copy_repeat_curriculum.Config.NOTEBOOK
LIU_NB = generalisation.Config.NOTEBOOK

BUDGET_FIELD = {TOY: "epochs", SWEEPS: "epochs", MNIST: "epochs", COPY: "updates",
                LIU_NB: "iterations"}  # fmt: skip
"""The config field that measures each notebook's training budget."""

LIU_TASKS = {"pattern_generation": "pattern generation", "seq_mnist": "seq-MNIST",
             "delayed_match": "delayed match"}  # fmt: skip
"""Notebook 05's tasks, as its claims name them, and as the README names them."""


@dataclass(frozen=True)
class Headline:
    """One row: ``title`` (what the paper claims, in a few words) at ``section`` of
    ``paper_notes``, decided by the claims ``claims`` (``(label, claim)``: the claim's text in
    ``claims.csv``; ``label`` names it in a row of several, e.g. its task) of ``notebook``,
    shown in ``figure`` (a file of the notebook's results folder)."""

    title: str
    paper_notes: str
    section: str
    notebook: str
    claims: tuple[tuple[str, str], ...]
    figure: str
    config_prefix: str = ""
    """Names the config fields of this part of the notebook (``"plastic_"``: notebook 01's
    plastic-RNN runs have their own ``plastic_seeds`` and ``plastic_epochs``)."""


def _one(text: str) -> tuple[tuple[str, str], ...]:
    return (("", text),)


def _per_task(text: str) -> tuple[tuple[str, str], ...]:
    """Notebook 05's claim ``text`` on each task (its claims read ``"<task>: <text>"``)."""
    return tuple((label, f"{task}: {text}") for task, label in LIU_TASKS.items())


HEADLINES: tuple[Headline, ...] = (
    Headline("Alignment of the synthetic gradient increases with λ (fixed RNN)", BP_LAMBDA,
             "6.1", TOY, _one("alignment of g(s_t) increases with λ (fixed RNN, T = 10)"),
             "alignment_vs_batch.png"),
    Headline("BP(λ)'s synthetic gradients align better than n-step SG's", BP_LAMBDA, "6.1", TOY,
             _one("BP(λ)'s synthetic gradients align better than n-step SG's, where each rule "
                  "applies them (BP(λ): every state; SG(n): chunk ends; the windows that "
                  "bootstrap)"),
             "alignment_vs_batch.png"),
    Headline("Plastic RNN: alignment better for larger λ", BP_LAMBDA, "6.2", TOY,
             _one("plastic RNN: alignment of g(s_t) better for larger λ (final values)"),
             "plastic_training.png", "plastic_"),
    Headline("Plastic RNN: alignment weaker than with a fixed RNN", BP_LAMBDA, "6.2", TOY,
             _one("plastic RNN: alignment weaker than with a fixed RNN"), "plastic_training.png",
             "plastic_"),
    Headline("BP(1) aligns better than BP(0) at every sequence length", BP_LAMBDA, "6.1", SWEEPS,
             _one("BP(1) aligns better than BP(0) at every T"), "alignment_vs_T.png"),
    Headline("BP(1) is \"particularly suited for longer timescales\" (its lead over n-step SG "
             "grows with T)", BP_LAMBDA, "6.1", SWEEPS,
             _one("BP(1) beats the best n-step SG that bootstraps by more at longer T (init "
                  "(ρ ≈ 0.58); alignment where each rule applies g) (\"particularly suited for "
                  "longer timescales\")"),
             "lead_vs_T.png"),
    Headline("Sequential MNIST: BP(1) has a lower test error than TBPTT(n) and SG(n)", BP_LAMBDA,
             "6.3", MNIST,
             _one("BP(1) has a lower test error than truncated BPTT(n) and n-step SG(n)"),
             "test_error.png"),
    Headline("Sequential MNIST: BP(0.5) is no better than TBPTT(n ≥ 3)", BP_LAMBDA, "6.3", MNIST,
             _one("BP(0.5) is not better than truncated BPTT(n ≥ 3)"), "test_error.png"),
    Headline("Copy-repeat: BP(1) solves longer sequences than the truncated rules", BP_LAMBDA,
             "6.4", COPY, _one("BP(1) solves longer sequences than truncated BPTT(n) and SG(n)"),
             "solved_length.png"),
    Headline("e-prop reaches higher curvature (λ_max) than BPTT", LIU, "5", LIU_NB,
             _per_task("e-prop reaches higher curvature (λ_max) than BPTT"),
             "final_lambda_max.png"),
    Headline("MDGL reaches higher curvature (λ_max) than BPTT", LIU, "5", LIU_NB,
             _per_task("MDGL reaches higher curvature (λ_max) than BPTT"), "final_lambda_max.png"),
    Headline("e-prop generalises worse (test − train loss) than BPTT", LIU, "5", LIU_NB,
             _per_task("e-prop generalises worse (test − train loss) than BPTT"),
             "final_gap_test_loss.png"),
    Headline("The generalisation gap correlates with λ_max (Liu et al.'s rules)", LIU, "5",
             LIU_NB,
             _per_task("the gap (test − train loss) correlates with λ_max (Liu et al.'s rules)"),
             "gap_vs_lambda_max.png"),
)  # fmt: skip
"""The two papers' claims, about a dozen, in the papers' order."""

EXTENSIONS: tuple[Headline, ...] = (
    Headline("Spectral radius ρ: BP(1)'s lead over n-step SG where long-range gradients "
             "survive", BP_LAMBDA, "6.1", SWEEPS,
             tuple((f"ρ = {rho}", f"BP(1) beats the best n-step SG that bootstraps by more at "
                    f"longer T (ρ = {rho}; alignment where each rule applies g): where the "
                    "network keeps long-range gradients") for rho in ("0.9", "1")),
             "lead_vs_T.png"),
    Headline("n*(T), the smallest SG window that matches BP(1), grows with T", BP_LAMBDA, "6.1",
             SWEEPS,
             tuple((label, "n*(T), the smallest SG window whose learning signal matches "
                    f"BP(1)'s, grows with T ({setting})")
                   for label, setting in (("paper's init", "init (ρ ≈ 0.58)"),
                                          ("ρ = 0.9", "ρ = 0.9"), ("ρ = 1", "ρ = 1"))),
             "n_star_vs_T.png"),
    Headline("The official LSTM's Jacobian quirks (faithful) vs the exact Jacobian", BP_LAMBDA,
             "3", MNIST,
             tuple((rule, f"{rule}: the official LSTM quirks (faithful) vs the exact Jacobian")
                   for rule in ("BP(0.5)", "BP(1)")),
             "test_error.png"),
    Headline("Where BP(1) lands in Liu et al.'s curvature space (vs BPTT and e-prop)", LIU, "6",
             LIU_NB, _per_task("where BP(1) lands on lambda_max (vs BPTT and e-prop)"),
             "final_lambda_max.png"),
)  # fmt: skip
"""Results the papers do not state, which this package adds."""


def budget_folder(budget: str) -> str:
    """Where a budget's results live, relative to ``results/`` (quick's at its top)."""
    return "" if budget == "quick" else f"{budget}/"


def run_description(notebook: str, profile: str, prefix: str = "", seeds: str = "") -> str:
    """``profile``'s seeds (``seeds``, the claim's own count, where given: see
    :data:`~bplambda.results.CLAIM_COLUMNS`), training budget as a share of the ``paper``
    profile's, and hidden size where smaller than the paper's, from the notebook's configs
    (fields named with ``prefix``, see :attr:`Headline.config_prefix`)."""
    experiment = EXPERIMENTS[notebook]
    cfg, paper = experiment.config(profile), experiment.config("paper")
    field = prefix + BUDGET_FIELD[notebook]
    budget = getattr(cfg, field)
    seeds = seeds or counted(len(getattr(cfg, prefix + "seeds")), "seeds")
    parts = [f"{profile}: {seeds}",
             f"{counted(budget, BUDGET_FIELD[notebook])} ({budget / getattr(paper, field):.0%} of "
             "the paper's)"]  # fmt: skip
    if cfg.hidden_size < paper.hidden_size:
        parts.append(f"{cfg.hidden_size} units (paper: {paper.hidden_size})")
    return ", ".join(parts)


def first_sentence(text: str) -> str:
    """The effect as the run wrote it, up to its first full stop (the rest, per-condition
    detail, is in ``results/README.md``)."""
    head, stop, _ = text.partition(". ")
    return head + ("." if stop else "")


POOL_TEST = re.compile(r"(?P<unit>[^:]+): Spearman r = (?P<r>\S+) \((?P<p_name>[^=]+) = "
                       r"(?P<p>[^,]+), n = (?P<n>\d+)\), Pearson r = \S+")  # fmt: skip
"""One pool's correlation as notebook 05 writes it (``generalisation_claims._correlation_text``)."""

INTERVAL_LABEL = re.compile(r"(?<=\]) \((?P<kind>95% CI|range), (?P<seeds>\d+ seeds?)\)")
"""The label after an interval, as :meth:`bplambda.verdicts.Interval.text` writes it."""

PLURAL = {"95% CI": "95% CIs", "range": "ranges"}

TRAILING_NOTE = re.compile(r" \((?P<note>[^()]*)\)\.?$")
"""A line's closing parenthesis (its budget, its windows: what a run's lines share)."""


def pool_test(effect: str) -> str:
    """A correlation claim's effect with its decisive test only: notebook 05 writes it as three
    ``"; "``-separated parts (``generalisation_claims._gap_correlations``): the condition
    means' Spearman r (exact permutation p, n), the pooled runs' (p, n), and each rule's own
    seeds' r. This keeps the means' r, p and n and the runs' r and n, and leaves the per-rule
    list to ``results/README.md``; any other effect, or parts not in that form (``"too few"``),
    come back as written, less the per-rule list."""
    parts = effect.split("; ")
    if not parts[0].startswith("condition means:"):
        return effect
    means, runs = (POOL_TEST.fullmatch(part) for part in parts[:2])
    if not (means and runs):
        return "; ".join(parts[:2])
    return (f"Spearman r: {means['r']} over {means['n']} condition means ({means['p_name']} = "
            f"{means['p']}), {runs['r']} over {runs['n']} pooled runs")  # fmt: skip


def effect_cell(lines: list[str]) -> str:
    """A row's effects (one line per claim), each interval's label and the lines' shared
    closing note stated once, in one parenthesis at the cell's end, where all lines carry the
    same: ``"a [0, 1] (95% CI, 5 seeds) vs b [1, 2] (95% CI, 5 seeds)"`` reads ``"a [0, 1] vs
    b [1, 2] (95% CIs, 5 seeds)"``. Labels that differ (5 and 9 seeds, a range and a CI) stay
    where they are."""
    labels = [m for line in lines for m in INTERVAL_LABEL.finditer(line)]
    notes = []
    if len(labels) > 1 and len({m.group() for m in labels}) == 1:
        label = labels[0]
        lines = [INTERVAL_LABEL.sub("", line) for line in lines]
        notes.append(f"{PLURAL[label['kind']]}, {label['seeds']}")
    closing = {m["note"] if (m := TRAILING_NOTE.search(line)) else None for line in lines}
    if len(lines) > 1 and len(closing) == 1 and None not in closing:
        lines = [TRAILING_NOTE.sub("", line) for line in lines]
        notes.insert(0, closing.pop())
    if not notes:
        return "<br>".join(lines)
    head, stop = (lines[-1][:-1], ".") if lines[-1].endswith(".") else (lines[-1], "")
    note = f"({'; '.join(notes)})"
    end = f"{head} {note}{stop}" if len(lines) == 1 else f"{head}<br>{note}"
    return "<br>".join([*lines[:-1], end])


def _cells(headline: Headline, claims: pd.DataFrame) -> dict[str, str]:
    """The row's cells; a claim no committed run has made reads "not run yet"."""
    verdicts, effects, runs, figures = [], [], [], []
    for label, text in headline.claims:
        found = claims[(claims["notebook"] == headline.notebook) & (claims["claim"] == text)]
        prefix = f"{label}: " if label else ""
        if found.empty:
            verdicts.append(f"{prefix}not run yet")
            continue
        row = found.iloc[0]
        quick = row.get("verdict (quick)", "not run")
        beside = f" (quick: {quick})" if row["budget"] != "quick" and quick != "not run" else ""
        improving = f"; {row['still_improving']}" if row.get("still_improving") else ""
        verdicts.append(f"{prefix}**{row['verdict']}**{beside}{improving}")
        effects.append(prefix + pool_test(first_sentence(row["bplambda"])))
        run = run_description(headline.notebook, row["budget"], headline.config_prefix,
                              row.get("seeds_run", ""))  # fmt: skip
        if run not in runs:
            runs.append(run)
        figure = (f"[{headline.figure}](results/{budget_folder(row['budget'])}"
                  f"{headline.notebook}/{headline.figure})")  # fmt: skip
        if figure not in figures:
            figures.append(figure)
    return {
        "claim": f"{headline.title} ([§{headline.section}]({headline.paper_notes}))",
        "strongest run": "<br>".join(runs) or "–",
        "verdict": "<br>".join(verdicts),
        "effect [interval]": effect_cell(effects) or "–",
        "figure": "<br>".join(figures) or "–",
    }


def table(headlines: tuple[Headline, ...], claims: pd.DataFrame) -> str:
    """``headlines`` as a Markdown table, from ``claims`` (:func:`claims_by_budget`'s rows)."""
    rows = pd.DataFrame([_cells(h, claims) for h in headlines])
    return markdown_table(rows.map(lambda cell: cell.replace("|", "\\|")))


def render(results_dir: str | Path = "results") -> str:
    """The README region: the headline table and the extensions' table, from the claims
    committed under ``results_dir`` (each claim at the strongest budget that ran it)."""
    claims = claims_by_budget(Path(results_dir))
    if claims is None:
        raise FileNotFoundError(f"{results_dir} holds no claims.csv; run make reproduce first")
    return "\n".join([table(HEADLINES, claims), "", "**Extensions** (not claims of the papers):",
                      "", table(EXTENSIONS, claims)])  # fmt: skip


def update_readme(readme: str | Path = "README.md", results_dir: str | Path = "results") -> Path:
    """Rewrite the region of ``readme`` between :data:`START` and :data:`END` with
    :func:`render`; the rest of the file is kept as it is."""
    path = project_path(readme)
    text = path.read_text(encoding="utf-8")
    before, start, rest = text.partition(START)
    _, end, after = rest.partition(END)
    if not (start and end):
        raise ValueError(f"{path} has no {START} … {END} region to fill")
    region = render(project_path(results_dir))
    return write_text(f"{before}{START}\n{region}\n{END}{after}", path.parent, path.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--results-dir", default="results")
    args = parser.parse_args(argv)
    print(f"updated {update_readme(args.readme, args.results_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
