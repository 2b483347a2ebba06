"""What each profile of a notebook runs, read from its experiment's ``DEFAULTS``: the table a
notebook shows beside its question, so that what a smaller profile leaves out of the paper's
setting is never typed twice (and cannot drift from the code)."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

import pandas as pd

from bplambda.experiments.options import ResumableOptions

HOW_IT_RUNS = frozenset(f.name for f in fields(ResumableOptions))
"""Options of how a run is carried out (workers, device, progress bars, output folder, …),
not of what it runs: left out of the table."""


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def profile_settings(config_type: type, defaults: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per setting that some profile sets, in the config's field order: ``setting``,
    then one column per profile of ``defaults`` (in its order) with the value that profile
    runs (the config's own default where the profile does not set it; ``—`` where there is
    none). Options of :data:`HOW_IT_RUNS` are left out."""
    own = {f.name: f.default for f in fields(config_type) if f.default is not MISSING}
    set_somewhere = {name for values in defaults.values() for name in values}
    names = [f.name for f in fields(config_type) if f.name in set_somewhere - HOW_IT_RUNS]
    rows = [
        {"setting": name, **{profile: _shown(values.get(name, own.get(name, "—")))
                             for profile, values in defaults.items()}}
        for name in names
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["setting", *defaults])
