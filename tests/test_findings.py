"""The closing "What this run shows" cell, generated from a hand-made claims table."""

import pandas as pd

from bplambda.findings import HEADING, what_this_run_shows
from bplambda.results import CLAIM_COLUMNS

CLAIMS = pd.DataFrame(
    [
        ["toy", "alignment increases with λ", "yes", "", "BP(0) 0.2 < BP(1) 0.9", "reproduced",
         "", ""],
        ["toy", "n*(T) grows with T", "yes", "", "n*: 2 at T=10, 5 at T=60",
         "inconclusive (2 seeds)", "still improving: 3/5 conditions", ""],
        ["copy", "BP(1) solves longer sequences", "yes", "", "alignment_applied 0.5 [0.4, 0.6]",
         "NOT reproduced", float("nan"), "5 seeds"],
    ],
    columns=CLAIM_COLUMNS,
)  # fmt: skip


def _bullets(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("- ")]


def test_every_claim_appears_once_with_its_verdict_word_for_word():
    shown = what_this_run_shows(CLAIMS)
    assert shown.startswith(HEADING)
    bullets = _bullets(shown)
    assert len(bullets) == len(CLAIMS)
    assert "*reproduced*" in bullets[0]
    assert "*inconclusive (2 seeds)*" in bullets[1]
    assert "*NOT reproduced*" in bullets[2]
    assert "alignment increases with λ" in bullets[0] and "BP(0) 0.2 \\< BP(1) 0.9" in bullets[0]


def test_still_improving_is_shown_where_a_claim_has_it_and_only_there():
    bullets = _bullets(what_this_run_shows(CLAIMS))
    assert ["still improving" in b for b in bullets] == [False, True, False]
    assert "still improving: 3/5 conditions" in bullets[1]


def test_claims_are_grouped_by_experiment_in_the_tables_order():
    shown = what_this_run_shows(CLAIMS)
    assert shown.index("### toy") < shown.index("alignment increases") < shown.index("### copy")
    assert shown.count("### ") == 2


def test_markdown_characters_in_the_text_render_as_themselves():
    bullets = _bullets(what_this_run_shows(CLAIMS))
    assert "n\\*(T)" in bullets[1] and "alignment\\_applied" in bullets[2]
    assert "\\[0.4, 0.6\\]" in bullets[2]


def test_a_table_without_the_still_improving_column_or_without_rows():
    without = CLAIMS.drop(columns="still_improving")
    assert len(_bullets(what_this_run_shows(without))) == 3
    assert "no claim" in what_this_run_shows(CLAIMS.iloc[:0])
