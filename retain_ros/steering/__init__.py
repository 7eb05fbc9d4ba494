"""Value-guided policy steering (V-GPS): a learnt Q(observation, action chunk, instruction) re-ranks K sampled chunks.

`value_model` is the network and `value_function` its checkpoint and scoring; `selection` is the K-sample choice the
node and `retain-eval` share, `manager` the node's live setting (loads off the control thread, swaps between chunks);
`rollouts` records episodes with outcomes, `value_data` turns them into decisions and `training` learns from them
(`retain-train value`); `synthetic` builds value functions whose Q is known, for tests and benchmarks.
"""
