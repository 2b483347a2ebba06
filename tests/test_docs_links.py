"""Every reference a reader follows resolves inside the repository: relative Markdown links (in
the README, docs/ and the notebooks' markdown cells) point to a file that exists and, with an
anchor, to a heading of that file; every ``docs/paper-*.md §X`` names a section heading of that
file; and no text cites the paper notes by their old names, which a clone does not have."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = {  # Markdown a reader sees rendered, by area: (file, its Markdown text) pairs
    "readme and docs": lambda: [(p, p.read_text()) for p in [ROOT / "README.md",
                                                             *sorted(ROOT.glob("docs/*.md"))]],
    "notebooks": lambda: [(p, "\n\n".join(_cells(p, "markdown")))
                          for p in sorted(ROOT.glob("notebooks/*.ipynb"))],
}  # fmt: skip
SOURCES = {  # every text that may cite the paper notes, by area
    "readme and docs": DOCUMENTS["readme and docs"],
    "package, tests and build": lambda: [
        (p, p.read_text())
        for p in [
            *sorted(ROOT.glob("bplambda/**/*.py")),
            *sorted(ROOT.glob("tests/**/*.py")),
            ROOT / "Makefile",
            ROOT / "environment.yml",
        ]
    ],
    "notebooks": lambda: [
        (p, "\n\n".join(_cells(p))) for p in sorted(ROOT.glob("notebooks/*.ipynb"))
    ],
}

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SECTION_REFERENCE = re.compile(
    r"docs/(paper-[\w-]+\.md)\s*(§[\d.]+(?:\s*(?:,|and)\s*§\d[\d.]*|\s*[–-]\s*§?\d[\d.]*)*)"
)
OLD_NAME = re.compile(r"(?<![\w.-])(?:PAPER|LIU2022)\.md")  # "docs/paper-liu2022.md" is fine


def _cells(notebook: Path, kind: str | None = None) -> list[str]:
    """The sources of a notebook's cells (of one ``kind`` if given)."""
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if kind is None or c["cell_type"] == kind]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation (backticks, dots, brackets,
    slashes …) dropped, spaces to hyphens; ``"### 2.4 Forward/backward (exact) [V]"`` →
    ``"24-forwardbackward-exact-v"``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(markdown: str) -> list[str]:
    """The ATX headings' texts, outside fenced code, in order."""
    return re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", markdown), re.MULTILINE)


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor; a repeated slug gets ``-1``, ``-2`` … as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for text in headings(markdown):
        base = slug(text)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def relative_links(markdown: str) -> Iterator[str]:
    """Link and image targets that point into the repository (no scheme, no absolute path),
    outside code."""
    prose = INLINE_CODE.sub("", FENCE.sub("", markdown))
    for target in LINK.findall(prose):
        if not re.match(r"[a-z][a-z0-9+.-]*:|/", target):
            yield target


def broken_links(document: Path, markdown: str) -> list[str]:
    """``"file: target (why)"`` for every relative link of ``document`` that resolves to
    nothing: a missing file, or an anchor that is no heading of the Markdown file it names."""
    problems = []
    for target in relative_links(markdown):
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        where = f"{document.relative_to(ROOT)}: {target}"
        if not file.exists():
            problems.append(f"{where} (no such file)")
        elif anchor and file.suffix == ".md":
            text = markdown if file == document else file.read_text()
            if anchor not in anchors(text):
                problems.append(f"{where} (no heading with this anchor)")
    return problems


def sections(reference: str) -> list[str]:
    """The section numbers a reference names: ``"§4.1, §6 and §7"`` → ``["4.1", "6", "7"]``;
    a range ``"§1–2"`` names both ends."""
    return [n.rstrip(".") for n in re.findall(r"\d[\d.]*", reference)]


def has_section(markdown: str, number: str) -> bool:
    """A heading starts with the section number (``6`` ↔ ``## 6. Experiments``, ``6.1`` ↔
    ``### 6.1 Toy task``; ``6`` does not match ``6.1``)."""
    return any(re.match(rf"{re.escape(number)}\.?\s", text) for text in headings(markdown))


def unresolved_sections(source: Path, text: str) -> list[str]:
    problems = []
    for name, reference in SECTION_REFERENCE.findall(text):
        notes = ROOT / "docs" / name
        if not notes.exists():
            problems.append(f"{source.relative_to(ROOT)}: docs/{name} does not exist")
            continue
        missing = [n for n in sections(reference) if not has_section(notes.read_text(), n)]
        if missing:
            problems.append(f"{source.relative_to(ROOT)}: docs/{name} {reference} (no §{missing})")
    return problems


def old_names(source: Path, text: str) -> list[str]:
    return [f"{source.relative_to(ROOT)}: {m.group(0)}" for m in OLD_NAME.finditer(text)]


@pytest.mark.parametrize("area", DOCUMENTS)
def test_relative_links_resolve(area):
    problems = [p for document, text in DOCUMENTS[area]() for p in broken_links(document, text)]
    assert problems == []


@pytest.mark.parametrize("area", SOURCES)
def test_paper_note_sections_exist(area):
    problems = [p for source, text in SOURCES[area]() for p in unresolved_sections(source, text)]
    assert problems == []


@pytest.mark.parametrize("area", SOURCES)
def test_no_paper_note_is_cited_by_a_name_outside_the_repository(area):
    problems = [p for source, text in SOURCES[area]() for p in old_names(source, text)]
    assert problems == []


def test_the_checks_catch_what_they_are_for():
    """Negative controls: a missing file, a missing anchor, a missing section and an old name
    are each reported; the GitHub anchor of a heading with punctuation is what GitHub makes."""
    assert slug("2.4 Forward/backward equivalence (exact in the code) [V]") == (
        "24-forwardbackward-equivalence-exact-in-the-code-v"
    )
    assert slug("`make lab` and λ") == "make-lab-and-λ"
    page = ROOT / "docs" / "page.md"  # never written: only its folder matters
    text = "[a](missing.md) [b](design.md#no-such-heading) [c](design.md#design) `[d](x.md)`"
    assert [p.split(": ")[1] for p in broken_links(page, text)] == [
        "missing.md (no such file)", "design.md#no-such-heading (no heading with this anchor)"
    ]  # fmt: skip
    notes = "docs/paper-liu2022.md"  # spelled apart, so that this file cites no §9.9 itself
    cited = "see docs/paper-bp-lambda.md §6.1 and " + notes + " §4.1, §9.9 or §1–2"
    assert sections("§4.1, §9.9") == ["4.1", "9.9"] and sections("§1–2") == ["1", "2"]
    assert [p.split("(")[-1] for p in unresolved_sections(page, cited)] == ["no §['9.9'])"]
    assert not has_section("## 6. Experiments\n### 6.1 Toy", "6.2")
    assert has_section("## 6. Experiments", "6") and not has_section("### 6.1 Toy", "6")
    legacy = "PAPER" + ".md §6.1, ../shared/LIU2022" + ".md; docs/paper-liu2022.md §1"
    assert len(old_names(page, legacy)) == 2


def papermill_commands(markdown: str) -> list[list[str]]:
    """The ``.venv/bin/papermill`` commands of a document's bash blocks, as argument lists."""
    blocks = re.findall(r"^```bash\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.strip().startswith(".venv/bin/papermill")]


def passed(command: list[str], name: str) -> str | None:
    """The value a papermill command passes for ``name`` with ``-p``, else ``None``."""
    return next((command[i + 2] for i, a in enumerate(command[:-2])
                 if a == "-p" and command[i + 1] == name), None)  # fmt: skip


def unknown_parameters(command: list[str]) -> set[str]:
    """The names a papermill command passes (``-p NAME value``, ``-y "{NAME: …}"``) that its
    notebook's ``parameters`` cell does not define."""
    cells = json.loads((ROOT / command[1]).read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    known = set(re.findall(r"^(\w+) =", "".join(cell["source"]), re.MULTILINE))
    named = {command[i + 1] for i, a in enumerate(command) if a == "-p"}
    named |= {k for i, a in enumerate(command) if a == "-y"
              for k in re.findall(r"(\w+):", command[i + 1])}  # fmt: skip
    return named - known


def test_documented_papermill_commands_use_real_parameters():
    """The commands the README and docs show (the GPU one cannot run here) name a notebook that
    exists and only parameters of its ``parameters`` cell."""
    commands = [c for _, text in DOCUMENTS["readme and docs"]() for c in papermill_commands(text)]
    assert any("cuda" in c for c in commands)  # the README's GPU example is among them
    for gpu in (c for c in commands if "cuda" in c):  # no tqdm redraws in its executed copy
        assert passed(gpu, "progress") == "False", gpu
    for command in commands:
        assert (ROOT / command[1]).exists() and unknown_parameters(command) == set(), command
    typo = [".venv/bin/papermill", "notebooks/01_toy_alignment.ipynb", "out.ipynb",
            "-p", "lamdas", "1", "-y", "{seeds: [0], windows: [1]}"]  # fmt: skip
    assert unknown_parameters(typo) == {"lamdas"}  # the check can fail
