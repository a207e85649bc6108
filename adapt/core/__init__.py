"""The engine's core: what every family and every job uses, and nothing that knows a model.

config (load a config file or name, --set overrides, the command that reproduces a run), mesh (device
mesh, sharded rows, order-free sums), distributed (one or many processes), ops (small array helpers),
method (the one `Method` type, its job kinds and each kind's inputs/outputs), settings (the one
validator of a method's `method_args`), job (the stage timer and the runlocal limit).
May import: nothing of `adapt` outside `core`.
"""
