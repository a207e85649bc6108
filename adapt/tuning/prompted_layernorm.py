"""CLIP with VPT tokens and the image tower's LayerNorm affines tunable (LaFTer's student, spec lafter.md).

`ClipPromptedLayerNorm` is the "visual" `adapt.tuning.prompted.ClipPrompted` with two changes:
- tunable set: the shallow VPT tokens (1, n, W) plus every LayerNorm scale and bias of the image
  tower (pre_ln, post_ln, ln1 and ln2 of each block: (2 + 2 depth) x 2 x W parameters);
- `features` returns the projected image feature g (B, E) without normalisation (the official
  student's logits are W g, no logit scale; the teacher normalises, see methods/lafter.py).
Prompts start at U(-v, v), v = sqrt(6 / (3 p^2 + W)) for patch size p (VPT's bound, spec
"Prompt init"); the LayerNorms start at the checkpoint's values. Our tower puts the shallow prompts
before ln_pre (adapt.models.clip_vision.VisionTower.tokens), the official code after it.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.tuning import augment as aug
from adapt.tuning.prompted import ClipPrompted


class ClipPromptedLayerNorm(ClipPrompted):
    def __init__(self, inputs, *, n_visual: int = 50, pixels=None):
        super().__init__(inputs, "visual", n_visual=n_visual, center=False, pixels=pixels)
        m = self.model
        tunable = nnx.Any(m.trainable_filter("visual_prompts"), m.trainable_filter("layernorm"))
        self.graph, self.params0, self.rest = nnx.split(m, tunable, ...)

    def prompt_bound(self) -> float:
        v = self.model.cfg.vision
        return float(np.sqrt(6.0 / (3 * v.patch_size ** 2 + v.width)))

    def init(self, seed: int):
        """Prompts ~ U(-v, v) (numpy, seeded); LayerNorm affines = the checkpoint's."""
        rng, bound = np.random.default_rng(seed), self.prompt_bound()
        flat = []
        for path, v in nnx.to_flat_state(self.params0):
            if "prompts" in map(str, path):
                v = v.replace(jnp.asarray(rng.uniform(-bound, bound, v.shape), jnp.float32))
            flat.append((path, v))
        return nnx.from_flat_state(flat)

    def features(self, params, batch, key, augment="none"):
        """(B, E) the unnormalised projected image feature of the prompted, LN-tuned tower."""
        m = nnx.merge(self.graph, params, self.rest)
        px = aug.augment(key, batch["pixels"], self.pre.mean, self.pre.std, augment)
        return m.encode_images(px, normalize=False)

    def export(self, params):
        """(head on the frozen class weights, every tuned parameter by path, the prompt set-up)."""
        head, _, setup = super().export(params)
        flat = {"/".join(map(str, k)): np.asarray(v) for k, v in nnx.to_flat_state(params)}
        return head, flat, setup
