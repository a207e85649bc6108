"""Pod-readiness check: ahead-of-time lower and compile the embedding step and an embedding-level
method for a many-device mesh, without the hardware, and print per-device memory.

Two targets:
- `--tpu v5e:8x8` (any topology libtpu knows): the maxtext train_compile approach. With `libtpu`
  importable (it installs on this machine: `pip install --target /tmp/libtpu_site "libtpu==0.0.42.*"`,
  the version jax 0.10.2 pins), the programs are compiled by the real TPU compiler for that topology.
- otherwise a simulated CPU mesh of `--devices` devices (`--xla_force_host_platform_device_count`),
  which checks sharding annotations, shapes and per-device buffer sizes, not TPU kernel choices.

  python experiments/pod_compile/compile_check.py --devices 64 --out experiments/pod_compile/cpu64.json
  TPU_WORKER_HOSTNAMES=localhost PYTHONPATH=/tmp/libtpu_site \
    python experiments/pod_compile/compile_check.py --tpu v5e:8x8 --out experiments/pod_compile/v5e_8x8.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=64)
    ap.add_argument("--batch-per-device", type=int, default=4)
    ap.add_argument("--pool", type=int, default=1_000_000, help="pool rows for the method step")
    ap.add_argument("--tpu", default="", help="a TPU topology, e.g. v5e:8x8 (needs libtpu)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    import jax
    import jax.numpy as jnp
    from flax import nnx

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from adapt.core import mesh as mesh_lib
    from adapt.core import ops
    from adapt.models.clip import CLIPModel
    from adapt.models.clip_load import parse_config

    if args.tpu:
        import numpy as np
        from jax.experimental import topologies

        devices = topologies.get_topology_desc(args.tpu, platform="tpu").devices
        mesh = jax.sharding.Mesh(np.asarray(devices), (mesh_lib.POOL,),
                                 axis_types=(jax.sharding.AxisType.Auto,))
    else:
        mesh = mesh_lib.make_mesh()
    rows, rep = mesh_lib.pool_sharding(mesh), mesh_lib.replicated(mesh)
    n_dev = mesh.devices.size
    results = {"devices": n_dev, "target": f"tpu {args.tpu}" if args.tpu else "cpu (simulated devices)",
               "jax": jax.__version__}

    def memory(compiled):
        m = compiled.memory_analysis()
        mib = lambda b: round(b / 2**20, 1)
        return dict(arguments_mib=mib(m.argument_size_in_bytes), outputs_mib=mib(m.output_size_in_bytes),
                    temp_mib=mib(m.temp_size_in_bytes), code_mib=mib(m.generated_code_size_in_bytes))

    # 1. The embedding step of a CLIP ViT-B/16 image tower (abstract weights: nothing is allocated).
    hf = {"model_type": "clip", "projection_dim": 512, "logit_scale_init_value": 2.6592,
          "vision_config": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                num_attention_heads=12, image_size=224, patch_size=16, hidden_act="quick_gelu"),
          "text_config": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                              num_attention_heads=8, max_position_embeddings=77, vocab_size=49408,
                              hidden_act="quick_gelu")}
    cfg = parse_config(hf)
    abstract = nnx.eval_shape(lambda: CLIPModel(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    batch = args.batch_per_device * n_dev

    def embed(state, pixels):
        return nnx.merge(graphdef, state).encode_images(pixels)

    pixels = jax.ShapeDtypeStruct((batch, 224, 224, 3), jnp.float32, sharding=rows)
    state_spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), state)
    compiled = jax.jit(embed, out_shardings=rows).lower(state_spec, pixels).compile()
    results["embed_vit_b16"] = dict(global_batch=batch, **memory(compiled))

    # 2. An embedding-level method step: centred zero-shot logits over a pool of `--pool` rows.
    n = mesh_lib.padded_size(args.pool, mesh)
    x = jax.ShapeDtypeStruct((n, 512), jnp.float32, sharding=rows)
    mask = jax.ShapeDtypeStruct((n,), jnp.bool_, sharding=rows)
    t = jax.ShapeDtypeStruct((1000, 512), jnp.float32, sharding=rep)

    def centred_zero_shot(x, mask, t):
        xc, _ = ops.centered(x, mask)
        return jnp.argmax(ops.zero_shot_logits(xc, t, 100.0), axis=1)

    compiled = jax.jit(centred_zero_shot, out_shardings=rows).lower(x, mask, t).compile()
    results["centred_zero_shot"] = dict(pool=n, classes=1000, dim=512, **memory(compiled))
    print(json.dumps(results, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
