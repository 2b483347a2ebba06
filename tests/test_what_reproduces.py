"""The README's "What reproduces" tables: generated from claims.csv, never typed by hand."""

from pathlib import Path

import pandas as pd
import pytest

from bplambda.experiments.generalisation_claims import _correlation_text
from bplambda.results import claims_by_budget
from bplambda.what_reproduces import (
    END,
    EXTENSIONS,
    HEADLINES,
    LIU_NB,
    MNIST,
    START,
    Headline,
    effect_cell,
    pool_test,
    render,
    run_description,
    table,
    update_readme,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


def _claims_folder(folder: Path, notebook: str, rows: dict[str, tuple[str, str]]) -> None:
    """``folder/notebook`` with a summary and ``claims.csv``: claim -> (effect, verdict)."""
    (folder / notebook).mkdir(parents=True)
    (folder / notebook / "summary.md").write_text("summary")
    pd.DataFrame([{"experiment": "x", "claim": claim, "paper": "yes", "official_code": "",
                   "bplambda": effect, "verdict": verdict}
                  for claim, (effect, verdict) in rows.items()]).to_csv(
        folder / notebook / "claims.csv", index=False)  # fmt: skip


def test_a_row_shows_the_strongest_run_with_quicks_verdict_beside_it(tmp_path):
    claims = (("", "BP(1) wins | often"), ("", "BP(0) loses"))
    headline = Headline("BP(1) wins", "docs/paper-bp-lambda.md", "6.3", MNIST, claims,
                        "test_error.png")  # fmt: skip
    _claims_folder(tmp_path, MNIST, {"BP(1) wins | often": ("0.4 [0.3, 0.5]. Details.",
                                                            "indicative (2 seeds)")})  # fmt: skip
    _claims_folder(tmp_path / "medium", MNIST,
                   {"BP(1) wins | often": ("0.2 [0.1, 0.3] (range, 3 seeds). More.",
                                           "reproduced (on 3-seed ranges)")})  # fmt: skip
    markdown = table((headline,), claims_by_budget(tmp_path))
    header, rule, row = markdown.splitlines()
    assert header == "| claim | strongest run | verdict | effect [interval] | figure |"
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert cells[0] == "BP(1) wins ([§6.3](docs/paper-bp-lambda.md))"
    assert cells[1] == "medium: 3 seeds, 10 epochs (20% of the paper's)"
    assert cells[2] == ("**reproduced (on 3-seed ranges)** (quick: indicative (2 seeds))"
                        "<br>not run yet")  # fmt: skip
    assert cells[3] == "0.2 [0.1, 0.3] (range, 3 seeds)."  # the first sentence, not the detail
    assert cells[4] == "[test_error.png](results/medium/03_sequential_mnist/test_error.png)"


def test_a_row_says_when_its_strongest_runs_were_still_improving(tmp_path):
    """Issue 24, item 3: a verdict taken at a budget that ended while the rules still improved
    says so in the README's row, as it does in results/README.md's."""
    claims = (("", "BP(1) wins"), ("", "BP(0) loses"))
    headline = Headline("BP(1) wins", "docs/paper-bp-lambda.md", "6.3", MNIST, claims,
                        "test_error.png")  # fmt: skip
    _claims_folder(tmp_path, MNIST, {"BP(1) wins": ("0.4 [0.3, 0.5].", "indicative (2 seeds)"),
                                     "BP(0) loses": ("0.6 [0.5, 0.7].", "reproduced")})  # fmt: skip
    flagged = pd.read_csv(tmp_path / MNIST / "claims.csv")
    flagged.assign(still_improving=["still improving: 3/4 conditions", None]).to_csv(
        tmp_path / MNIST / "claims.csv", index=False)  # fmt: skip
    row = table((headline,), claims_by_budget(tmp_path)).splitlines()[2]
    verdicts = [c.strip() for c in row.strip("|").split(" | ")][2].split("<br>")
    assert verdicts == ["**indicative (2 seeds)**; still improving: 3/4 conditions",
                        "**reproduced**"]  # fmt: skip


def test_rows_of_several_claims_label_each_and_a_quick_only_claim_has_nothing_beside_it(tmp_path):
    (headline,) = [h for h in HEADLINES if h.notebook == LIU_NB and "MDGL" in h.title]
    _claims_folder(tmp_path, LIU_NB, {claim: (f"effect on {label}", "inconclusive (3 seeds)")
                                      for label, claim in headline.claims})  # fmt: skip
    row = table((headline,), claims_by_budget(tmp_path)).splitlines()[2]
    assert row.count("**inconclusive (3 seeds)**") == 3 and "(quick:" not in row
    for label, _ in headline.claims:
        assert f"{label}: effect on {label}" in row
    assert "quick: 3 seeds, 400 iterations (4% of the paper's), 64 units (paper: 128)" in row


def _pool_effect(means_n: int, runs_n: int) -> str:
    """A correlation claim's effect as notebook 05 writes it: condition means; runs; each rule."""

    def one(r: float, p: float, n: int) -> pd.DataFrame:
        row = {"task": "t", "spearman_r": r, "spearman_p": p, "n": n, "pearson_r": r / 2}
        return pd.DataFrame([row])  # a text column, as in correlations.csv: n stays an int

    return "; ".join([_correlation_text(one(0.3, 0.68, means_n), "condition means",
                                        "exact permutation p"),
                      _correlation_text(one(0.52, 0.0081, runs_n), "runs", "p"),
                      "within each rule's seeds (Spearman): BPTT -0.60, e-prop +0.60"])  # fmt: skip


def test_a_correlation_row_shows_the_pools_test_and_leaves_each_rules_seeds_out(tmp_path):
    """Issue 26: the gap-vs-λ_max cell listed every rule's within-seeds r for every task (~200
    words); it shows the decisive test (condition means) and the pooled runs' r."""
    (headline,) = [h for h in HEADLINES if h.notebook == LIU_NB and "correlates" in h.title]
    _claims_folder(tmp_path, LIU_NB, {claim: (_pool_effect(5, 25), "inconclusive (5 conditions)")
                                      for _, claim in headline.claims})  # fmt: skip
    row = table((headline,), claims_by_budget(tmp_path)).splitlines()[2]
    effect = [c.strip() for c in row.strip("|").split(" | ")][3]
    assert effect.split("<br>") == [
        f"{label}: Spearman r: 0.30 over 5 condition means (exact permutation p = 0.68), "
        "0.52 over 25 pooled runs" for label, _ in headline.claims]  # fmt: skip
    assert "within each rule" not in row and "Pearson" not in row


def test_a_pool_too_small_to_test_keeps_its_words_and_other_effects_are_untouched():
    too_few = "condition means: too few; runs: too few; within each rule's seeds (Spearman): -"
    assert pool_test(too_few) == "condition means: too few; runs: too few"
    other = "BP(0) 0.1 [0.0, 0.2] (95% CI, 9 seeds); 1/10 diverged; BP(1) 0.3 [0.2, 0.4]"
    assert pool_test(other) == other


def test_an_effect_cell_states_an_interval_label_all_its_intervals_share_once_at_its_end():
    """Issue 26: "(95% CI, 5 seeds)" after every number; a range stays a range."""
    assert effect_cell(["a 0.1 [0.0, 0.2] (95% CI, 5 seeds) < b 0.9 [0.8, 1.0] (95% CI, 5 seeds)."]
                       ) == "a 0.1 [0.0, 0.2] < b 0.9 [0.8, 1.0] (95% CIs, 5 seeds)."  # fmt: skip
    assert effect_cell(["x: a 15 [15, 15] (range, 3 seeds)", "y: a 17 [15, 23] (range, 3 seeds)"]
                       ) == "x: a 15 [15, 15]<br>y: a 17 [15, 23]<br>(ranges, 3 seeds)"  # fmt: skip
    mixed = ["a 0.1 [0.0, 0.2] (95% CI, 9 seeds); b 0.3 [0.2, 0.4] (95% CI, 10 seeds)",
             "c 0.5 [0.4, 0.6] (range, 3 seeds) vs d 0.7 [0.6, 0.8] (95% CI, 5 seeds)"]  # fmt: skip
    assert effect_cell(mixed[:1]) == mixed[0] and effect_cell(mixed[1:]) == mixed[1]
    single = "0.2 [0.1, 0.3] (range, 3 seeds)."
    assert effect_cell([single]) == single
    unlabelled_first = ["x: n* in [2, 3]", "y: a 1 [0, 2] (range, 2 seeds) vs b 2 [1, 3] "
                        "(range, 2 seeds)"]  # fmt: skip
    assert effect_cell(unlabelled_first) == ("x: n* in [2, 3]<br>y: a 1 [0, 2] vs b 2 [1, 3]"
                                             "<br>(ranges, 2 seeds)")  # fmt: skip


def test_an_effect_cell_states_the_closing_note_all_its_lines_share_once():
    ci = "(95% CI, 5 seeds)"
    lines = [f"x: a 1 [0, 2] {ci} vs b 2 [1, 3] {ci} (100 steps)",
             f"y: a 3 [2, 4] {ci} vs b 4 [3, 5] {ci} (100 steps)"]  # fmt: skip
    assert effect_cell(lines) == ("x: a 1 [0, 2] vs b 2 [1, 3]<br>y: a 3 [2, 4] vs b 4 [3, 5]"
                                  "<br>(100 steps; 95% CIs, 5 seeds)")  # fmt: skip
    apart = [lines[0], lines[1].replace("100 steps", "200 steps")]
    assert effect_cell(apart).endswith("(200 steps)<br>(95% CIs, 5 seeds)")


def test_update_readme_rewrites_only_its_region_and_refuses_a_readme_without_one(tmp_path):
    _claims_folder(tmp_path / "results", MNIST, {"a claim of no row": ("0.1", "reproduced")})
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{START}\nold table\n{END}\n\nThe rest.\n")
    update_readme(readme, tmp_path / "results")
    text = readme.read_text()
    assert text.startswith(f"# Title\n\n{START}\n") and text.endswith(f"{END}\n\nThe rest.\n")
    assert "old table" not in text and "not run yet" in text
    readme.write_text("# Title without a region\n")
    with pytest.raises(ValueError, match="what-reproduces"):
        update_readme(readme, tmp_path / "results")


def test_every_headline_claim_is_a_claim_some_committed_run_makes():
    claims = claims_by_budget(RESULTS)
    made = set(zip(claims["notebook"], claims["claim"]))
    missing = [(h.notebook, text) for h in (*HEADLINES, *EXTENSIONS) for _, text in h.claims
               if (h.notebook, text) not in made]  # fmt: skip
    assert not missing, f"claims no committed run makes (renamed in the code?): {missing}"


def test_the_committed_readme_shows_the_committed_claims():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    region = text.partition(START)[2].partition(END)[0].strip()
    assert region == render(RESULTS), "run: python -m bplambda.what_reproduces"


def test_a_run_of_one_seed_and_one_epoch_is_described_in_the_singular():
    """MNIST's smoke profile trains one seed for one epoch; larger profiles keep their plural."""
    assert run_description(MNIST, "smoke").startswith("smoke: 1 seed, 1 epoch (")
    assert run_description(MNIST, "paper").startswith("paper: 5 seeds, ")


def test_a_run_says_the_seeds_its_claim_counted_where_the_claim_gives_them():
    """A merge of a campaign's finished shards can hold fewer seeds than the profile's."""
    assert run_description(LIU_NB, "paper").startswith("paper: 10 seeds, ")
    assert run_description(LIU_NB, "paper", seeds="5–10 seeds per rule").startswith(
        "paper: 5–10 seeds per rule, 10,000 iterations"
    )
