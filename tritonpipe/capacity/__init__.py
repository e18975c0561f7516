"""Capacity planning: a model of Triton's dynamic batching (simulated), the service profile it
is driven by, the plan, the sweep of serving configs, and known-answer devices to check them."""
