"""Credit-assignment rules, each a small object selected by name.

Every rule turns one batch into gradients (to descend) and diagnostics: ``rule.gradients(cell,
params, inputs, targets) -> RuleOutput``. ``params`` holds the groups ``"rnn"``, ``"readout"``
and the rule's own (``"synthesiser"``, ``"feedback"``). A rule never calls an optimiser.

=============  ==============================================================================
``bptt``       exact backpropagation through the whole sequence (autograd)
``tbptt``      truncated BPTT, window ``n``, chunks aligned to the end of the sequence
``sg``         Jaderberg et al.'s n-step synthetic gradients on top of ``tbptt``
``bp_lambda``  accumulate BP(λ): local gradients plus ``scale·g(s_t)``, no BPTT at all
``oracle``     local gradients plus the true future gradient (the ceiling; equals ``bptt``)
``eprop``      e-prop: eligibility traces × symmetric or random feedback (rate RNN only)
``rflo``       RFLO: ψ inside the trace's filter, random feedback (rate RNN only)
``mdgl``       MDGL: e-prop plus the one-hop modulatory signal (rate RNN only)
=============  ==============================================================================

BPTT, TBPTT, SG and the oracle run an LSTM through torch's fused kernel where the cell and
device allow it (:mod:`bplambda.rules.fused`), with the same gradients to rounding; the option
``kernel="reference"`` forces the hand-written step.

A rule declares the parameter groups it trains (``rule.trains``) and makes the groups it owns
beyond the network (``rule.init_groups``: a synthesiser, a fixed feedback matrix).
"""

from __future__ import annotations

from dataclasses import fields

from bplambda.errors import check_choice
from bplambda.rules.accumulate import IMPLEMENTATIONS, BPLambda
from bplambda.rules.base import OnStep, Rule
from bplambda.rules.eligibility import MDGL, RFLO, EProp
from bplambda.rules.oracle import Oracle
from bplambda.rules.truncated import (
    BPTT,
    NStepSyntheticGradient,
    TruncatedBPTT,
    chunk_starts,
    true_gradients,
)

RULES: dict[str, type] = {
    "bptt": BPTT,
    "tbptt": TruncatedBPTT,
    "sg": NStepSyntheticGradient,
    "bp_lambda": BPLambda,
    "oracle": Oracle,
    "eprop": EProp,
    "rflo": RFLO,
    "mdgl": MDGL,
}


def make_rule(name: str, **options: object) -> Rule:
    """A rule by name, e.g. ``make_rule("bp_lambda", lmbda=0.5, gamma=0.9, scale=0.1)``.

    Raises ``ValueError`` naming the problem for an unknown rule, an unknown option, or a value
    out of range (λ ∈ [0, 1], γ ∈ (0, 1], window n ≥ 1).
    """
    check_choice("rule", name, sorted(RULES))
    rule_type = RULES[name]
    allowed = [f.name for f in fields(rule_type)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"rule {name!r} has no option(s) {unknown}; its options are {allowed or 'none'}"
        )
    if "window" in allowed and "window" not in options:
        raise ValueError(f"rule {name!r} needs a window: pass window=n with an integer n >= 1")
    return rule_type(**options)


__all__ = [
    "BPTT", "IMPLEMENTATIONS", "MDGL", "RFLO", "RULES", "BPLambda", "EProp",
    "NStepSyntheticGradient", "OnStep", "Oracle", "Rule", "TruncatedBPTT", "chunk_starts",
    "make_rule", "true_gradients",
]  # fmt: skip
