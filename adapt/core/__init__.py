"""The engine's core: what every family and every job uses, and nothing that knows a model.

config (load a config file or name, --set overrides), mesh (device mesh, sharded rows, order-free sums),
distributed (one or many processes), ops (small array helpers), method (the `Method` interface and the
inputs/outputs of each job kind).
May import: nothing of `adapt` outside `core`.
"""
