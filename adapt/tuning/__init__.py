"""Prompt tuning on pseudo-labels: the jit-compiled SGD epoch loop (loop), the prompted model
(prompted: CoOp/VPT on CLIP, head tuning on the offline model via offline_head), augmentation
(augment), CLIP with VPT + vision LayerNorms tunable (prompted_layernorm), a text-only linear
classifier (text_classifier), pseudo-label selection (pseudolabels, labeller), the rounds the tuning
methods share (rounds: fit a round, record it, export the tuned model), round plots/tables (report).
May import: core, data, models, features.
"""
