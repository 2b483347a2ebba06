"""Notebook parameters: the values papermill injected into a notebook, refused where the
notebook does not know them (each value is then checked by its config field,
:mod:`bplambda.checks`)."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from typing import Any

from bplambda.errors import refuse_unknown

INJECTED_HEADER = "# Parameters"  # papermill's first line of the cell it injects


def injected_names(history: Sequence[str]) -> set[str]:
    """Names assigned by the last cell papermill injected (``# Parameters``), from IPython's
    input history ``In``; empty when the notebook was not run by papermill."""
    for source in reversed(history):
        if source.lstrip().startswith(INJECTED_HEADER):
            tree = ast.parse(source)
            return {
                target.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            }
    return set()


def notebook_parameters(
    namespace: Mapping[str, Any], known: type | Iterable[str]
) -> dict[str, Any]:
    """The values of the ``known`` parameters (names, or a config dataclass's fields) found in
    a notebook's namespace (``globals()``), to pass to the config builder.

    Papermill only warns about a parameter the notebook does not have (``-p lamdas 0.5``) and
    runs on with the default; here that is an error naming the parameter and the known ones.
    """
    names = [f.name for f in fields(known)] if is_dataclass(known) else known
    known = sorted(set(names))
    unknown = sorted(injected_names(namespace.get("In", [])) - set(known))
    if unknown:
        raise refuse_unknown(unknown[0], namespace.get(unknown[0]), known, "this notebook")
    return {name: namespace[name] for name in known if name in namespace}
