"""Comparing two results folders: equal tables pass, a changed value or a missing table is
named, wall times are left out."""

import pandas as pd

from bplambda.compare_results import differences, main


def _write(folder, value, seconds):
    (folder / "nb").mkdir(parents=True)
    table = pd.DataFrame({"condition": ["BPTT", "BPTT"], "metric": ["loss", "seconds_per_epoch"],
                          "value": [value, seconds]})  # fmt: skip
    table.to_csv(folder / "nb" / "t.csv", index=False)


def test_equal_tables_agree_whatever_their_wall_times(tmp_path):
    _write(tmp_path / "a", 0.5, 10.0)
    _write(tmp_path / "b", 0.5 * (1 + 1e-9), 99.0)
    assert differences(tmp_path / "a", tmp_path / "b") == []
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0


def test_a_changed_value_and_a_missing_table_are_named(tmp_path):
    _write(tmp_path / "a", 0.5, 10.0)
    _write(tmp_path / "b", 0.6, 10.0)
    (tmp_path / "c").mkdir()
    assert differences(tmp_path / "a", tmp_path / "b") == [
        "nb/t.csv: column 'value' differs from row 0 (0.5 vs 0.6)"]  # fmt: skip
    assert differences(tmp_path / "a", tmp_path / "c")[0].startswith("nb/t.csv: missing")
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1


def test_added_columns_pass_only_when_allowed(tmp_path):
    _write(tmp_path / "a", 0.5, 10.0)
    _write(tmp_path / "b", 0.5, 10.0)
    table = pd.read_csv(tmp_path / "b" / "nb" / "t.csv").assign(variant="default")
    table.to_csv(tmp_path / "b" / "nb" / "t.csv", index=False)
    assert differences(tmp_path / "a", tmp_path / "b")[0].startswith("nb/t.csv: columns")
    assert differences(tmp_path / "a", tmp_path / "b", added_columns=True) == []
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--added-columns"]) == 0


def test_missing_labels_and_provenance_do_not_make_a_difference(tmp_path):
    for folder, jobs in (("a", 1), ("b", 2)):
        (tmp_path / folder / "nb").mkdir(parents=True)
        pd.DataFrame({"steps": ["1 2", None], "jobs": [jobs, jobs], "commit": ["x", "x"]}).to_csv(
            tmp_path / folder / "nb" / "t.csv", index=False)  # fmt: skip
    assert differences(tmp_path / "a", tmp_path / "b") == []


def test_empty_tables_agree_and_differ_from_a_filled_one(tmp_path):
    """A notebook may write an empty table (nothing to list); comparing it must not crash."""
    _write(tmp_path / "a", 0.5, 10.0)
    _write(tmp_path / "b", 0.5, 10.0)
    for folder in ("a", "b"):
        (tmp_path / folder / "nb" / "empty.csv").write_text("")
    assert differences(tmp_path / "a", tmp_path / "b") == []
    _write(tmp_path / "c", 0.5, 10.0)
    (tmp_path / "c" / "nb" / "empty.csv").write_text("x\n1\n")
    assert differences(tmp_path / "a", tmp_path / "c") == [
        "nb/empty.csv: columns or row count differ ((0, 0) vs (1, 1))"]  # fmt: skip
