"""Which merged model serves: the model manager, the recipe cache and the per-instruction recipes.

The model manager merges into spare copies off the control thread, swapped in between chunks; the control loop chooses
each instruction's recipe. No rclpy: the node and a policy server use it alike.
"""
