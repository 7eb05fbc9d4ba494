"""Value-guided policy steering (V-GPS): a learnt Q(observation, action chunk, instruction) re-ranks K sampled chunks.

`value_model` is the network, `value_function` its checkpoint and scoring, `selection` the K-sample choice the node
and `retain-eval` share, `rollouts` the recorded episodes with outcomes that the value function learns from.
"""
