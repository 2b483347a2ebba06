"""Every source notebook reads as a report (issue 26): the question with the paper's section,
what each profile runs, what to look for before every figure, and closing words generated
from the run's own claims. Checked on the committed (unexecuted) notebooks, in seconds."""

import re

import nbformat
import pytest

from bplambda import reproduce

NOTEBOOKS = reproduce.notebooks()
SECTION = re.compile(r"`docs/paper-(bp-lambda|liu2022)\.md §\d")


def _cells(notebook) -> list:
    return nbformat.read(notebook, as_version=4).cells


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_opening_cell_asks_the_papers_question_with_its_section(notebook):
    opening = _cells(notebook)[0]
    assert opening.cell_type == "markdown" and opening.source.startswith("# ")
    assert "**The question" in opening.source and SECTION.search(opening.source)
    assert "profile" in opening.source.lower() and "`smoke`" in opening.source


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_has_a_markdown_cell_before_it(notebook):
    cells = _cells(notebook)
    figures = [k for k, c in enumerate(cells)
               if c.cell_type == "code" and "save_figure(" in c.source]  # fmt: skip
    assert figures
    for k in figures:
        assert cells[k - 1].cell_type == "markdown", (notebook.name, cells[k].source[:60])


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_profiles_table_and_the_closing_words_are_generated(notebook):
    cells = _cells(notebook)
    assert any("profile_settings(experiment.Config, experiment.DEFAULTS)" in c.source
               for c in cells if c.cell_type == "code")  # fmt: skip
    assert cells[-1].cell_type == "code" and "what_this_run_shows(" in cells[-1].source


def test_no_notebook_cites_the_notes_outside_the_repository():
    for notebook in NOTEBOOKS:
        for cell in _cells(notebook):
            assert not re.search(r"(?<![-/])(PAPER|LIU2022)\.md", cell.source), notebook.name
