"""The classification inputs a method sees, built from plain arrays for tests: pool rows x (N, D)
sharded over `n_devices` (padded to a multiple of n_devices x `multiple` rows), class embeddings
t (C, D), logit scale 10, no extra views or prompts."""
import jax

from adapt.core import mesh as mesh_lib
from adapt.core.method import MethodInputs
from adapt.features.text import ClassTexts


def pool_inputs(x, t, n_devices, multiple=1) -> MethodInputs:
    mesh = mesh_lib.make_mesh(n_devices)
    xs, mask = mesh_lib.shard_rows(x, mesh, multiple)
    texts = ClassTexts(weights=t, view_weights=None, view=None, prompts=[[]] * len(t),
                       prompt_weights=[[]] * len(t))
    return MethodInputs(xs, mask, mesh_lib.replicate(t, mesh), 10.0, {"embedding": xs}, texts, mesh,
                        jax.random.key(0))
