"""The operator-graph workloads by name (FlexFlow's evaluation DNNs and DeepFlow's LSTM
language model): one table for ``search-ops``, ``codesign`` and ``sensitivity``."""

from __future__ import annotations

from collections.abc import Callable

from deepflow.workload import cnn, rnn
from deepflow.workload.opgraph import OpGraph

OPGRAPH_WORKLOADS: dict[str, Callable[..., OpGraph]] = {
    "alexnet": cnn.alexnet,
    "inception-v3": cnn.inception_v3,
    "resnet-101": cnn.resnet101,
    "rnntc": rnn.rnntc,
    "rnnlm": rnn.rnnlm,
    "nmt": rnn.nmt,
    "lstm-lm": rnn.lstm_lm,
}
"""Builders taking the global batch as first argument."""
