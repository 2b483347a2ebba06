"""The one-line errors a bad parameter gets (what is wrong, how to fix it); a module of its own
so that the lowest layers (tasks) can raise them without importing the training stack."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ParameterError(ValueError):
    """A bad parameter value; its message is one line: parameter, value given, what is allowed.

    IPython (JupyterLab, papermill) shows it as that one line instead of a traceback.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def refuse(name: str, value: object, allowed: str) -> ParameterError:
    """The error for parameter ``name``: ``name=<value> is invalid: <allowed>``."""
    return ParameterError(f"parameter {name}={value!r} is invalid: {allowed}")


def refuse_unknown(name: str, value: object, known: Iterable[str], owner: str) -> ParameterError:
    """The error for a parameter ``owner`` does not have, with the nearest known name where
    one is close (``lamdas`` → ``lambdas``, ``task`` → ``tasks``) and all of them."""
    known = sorted(known)
    near = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ParameterError(
        f"parameter {name}={value!r} is not a parameter of {owner}{hint}; its parameters are "
        f"{known}"
    )


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    """Refuse ``value`` unless it is one of ``choices``, with the ValueError
    ``<name>=<value> is unknown; choose one of [...]`` (the choices in the order given)."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is unknown; choose one of {choices}")
