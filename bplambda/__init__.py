"""bplambda: BP(λ), online learning via synthetic gradients (Pemberton & Costa, TMLR 2024).

The public API::

    from bplambda import make_cell, make_rule, train, TrainConfig, ToyTask
    cell = make_cell("linear_rnn", input_size=10, hidden_size=30)
    rule = make_rule("bp_lambda", lmbda=1.0, gamma=1.0)
    result = train(cell, rule, ToyTask(seq_len=10), TrainConfig(num_batches=1000,
                   lr={"rnn": 0, "readout": 0, "synthesiser": 1e-4}, track_alignment=True),
                   seeds=[0, 1, 2, 3, 4])
    result.table  # tidy: seed, batch, t, metric, value
"""

from bplambda.bp_lambda import backward_sweep, online_bp_lambda, true_future_gradients
from bplambda.cells import LSTM, VanillaRNN, make_cell, unroll
from bplambda.device import resolve_device
from bplambda.metrics import alignment, batch_alignment, update_alignment
from bplambda.outputs import RuleOutput
from bplambda.readout import SequenceTargets
from bplambda.rules import RULES, make_rule
from bplambda.stacking import init_network, init_stacked_network
from bplambda.tasks import ToyTask
from bplambda.train import TrainConfig, TrainResult, train

__all__ = [
    "LSTM",
    "RULES",
    "RuleOutput",
    "SequenceTargets",
    "ToyTask",
    "TrainConfig",
    "TrainResult",
    "VanillaRNN",
    "alignment",
    "backward_sweep",
    "batch_alignment",
    "init_network",
    "init_stacked_network",
    "make_cell",
    "make_rule",
    "online_bp_lambda",
    "resolve_device",
    "train",
    "true_future_gradients",
    "unroll",
    "update_alignment",
]
