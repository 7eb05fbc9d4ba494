"""Value functions built by hand, not trained: Q is a known function of the chunk (tests and benchmarks).

`first_joint_value` scores a chunk by its first action's joint-1 number, so the argmax over samples is known without
running the network, and a benchmark can time steering at any size without a trained checkpoint.
"""

from __future__ import annotations

import torch

from retain_ros.policy.interface import PolicySpec
from retain_ros.policy.processor_reference import NormalizationStats
from retain_ros.policy.tokenizer import WordTokenizer
from retain_ros.steering.value_function import ValueFunction
from retain_ros.steering.value_model import ValueConfig, ValueNetwork


def first_joint_value(spec: PolicySpec, executed_steps: int = 2, image_size: tuple[int, int] = (16, 16),
                      **sizes: object) -> ValueFunction:
    """A value function for `spec` whose Q is exactly the first action's joint-1 number (identity statistics).

    The MLP head computes relu(a) - relu(-a) of that input; every other weight of the head is 0. `sizes` override
    the ValueConfig's (e.g. the embedded size, for timing).
    """
    settings = dict(camera_names=tuple(spec.camera_names), image_size=image_size, channels=(4, 4), feature_width=8,
                    text_width=8, hidden=(4, 4), executed_steps=executed_steps)
    config = ValueConfig(**{**settings, **sizes})
    net = ValueNetwork(config)
    with torch.no_grad():
        linears = [m for m in net.head if isinstance(m, torch.nn.Linear)]
        for p in net.head.parameters():
            p.zero_()
        first, last = linears[0], linears[-1]
        column = first.in_features - executed_steps * config.action_dim  # the first executed action's joint 1
        first.weight[0, column], first.weight[1, column] = 1.0, -1.0
        for middle in linears[1:-1]:  # pass both units on
            middle.weight[0, 0], middle.weight[1, 1] = 1.0, 1.0
        last.weight[0, 0], last.weight[0, 1] = 1.0, -1.0
    stats = NormalizationStats.identity(config.state_dim, config.action_dim)
    tokenizer = WordTokenizer(num_buckets=config.vocab_buckets, max_length=config.max_text_length)
    return ValueFunction(config, stats, tokenizer, net)
