"""ALIGN at the real align-base shape: parity with transformers' AlignModel and the image tower's images/s
beside AlignVisionModel, CPU, one run.

    python experiments/towers/throughput_align.py [--batch 8] [--reps 3] [--gain 1.3] [--grouped]

Model: transformers' `AlignConfig()` defaults (= kakaobrain/align-base: EfficientNet-B7 width 2.0 /
depth 3.1, 55 blocks, 640-d output; BERT base, 30,522 tokens; projection 640) at image size 289, random
weights as tests/test_align.py draws them (`hf_align`, kernels N(0, gain^2 / fan_in), random BatchNorm
statistics), loaded into ours through the loader's own mapping (`adapt.models.align.from_tensors`) without
files. gain 1.3: at 1.0 the 55 blocks wash the image out (embeddings of different images equal to 3e-7),
at 1.5 activations reach 1e9; at 1.3 they reach ~100 and the embeddings spread by ~0.1. Parity:
L2-normalised image embeddings of the timed batch (a colour per image plus noise) and of 2 texts (random
ids, one padded after 9 tokens, attention mask) against `get_image_features` / `get_text_features`,
and 2 images against torch in float64 too (what float32 rounding alone gives at this depth).
Throughput: our image tower jitted with `encode_images`' normalisation (the CPU default, the shifted
depthwise form; with --grouped also XLA's grouped convolution) vs torch `get_image_features` +
normalisation under `inference_mode` with all cores; the text towers are freed first (memory). Warm-ups excluded; the timed repetitions alternate between the
contestants; process CPU seconds recorded. Writes results_align.json next to this file (or --out).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from timing import time_alternating  # noqa: E402  (this script's folder)


def build_torch(gain: float):
    """The torch AlignModel at align-base shapes, random weights, and our config parsed from its config."""
    from transformers import AlignConfig

    from adapt.models import align_load
    from tests.test_align import hf_align

    hf = hf_align({"image_size": 289}, {}, 640, seed=0, gain=gain)
    cfg = align_load.parse_config(json.loads(hf.config.to_json_string()))
    assert cfg == align_load.parse_config(AlignConfig().to_dict() | {"vision_config": {"image_size": 289}})
    return hf, cfg


def torch_references(hf, pixels, ids, mask) -> dict:
    """Unit embeddings from torch in float32, and the images once more in float64 (the vision tower cast
    there and back: float32 -> float64 -> float32 is exact), to size float32's own rounding here."""
    from tests.test_align import torch_images, torch_texts

    ref = {"image": torch_images(hf, pixels), "text": torch_texts(hf, ids, mask)}
    hf.vision_model.double()
    ref["image_f64"] = torch_images(hf, pixels[:2].astype("float64"))  # 2 images: float64 convs are slow
    hf.vision_model.float()
    return ref


def parity(model, ref, pixels, ids, mask) -> dict:
    import jax.numpy as jnp
    import numpy as np

    from adapt.models.clip import jit_call

    img = np.asarray(jit_call(model, "encode_images", jnp.asarray(pixels)))
    txt = np.asarray(jit_call(model, "encode_tokens", jnp.asarray(ids), jnp.asarray(mask)))
    return {"image_max_abs_diff": float(np.abs(img - ref["image"]).max()),
            "text_max_abs_diff": float(np.abs(txt - ref["text"]).max()),
            "image_ours_vs_torch_float64_max_abs_diff_2_images": float(np.abs(img[:2] - ref["image_f64"]).max()),
            "image_torch_float32_vs_float64_max_abs_diff_2_images": float(np.abs(ref["image"][:2] - ref["image_f64"]).max()),
            "image_embedding_spread_ptp_max": float(np.ptp(ref["image"], axis=0).max()),
            "logit_scale": model.logit_scale}


def bench(vision, hf, pixels, args) -> dict:
    """Images/s of our image tower (`vision`, unit rows as `encode_images`) and of torch's."""
    import jax
    import numpy as np
    import torch
    from flax import nnx

    from adapt.models.clip import l2_normalize

    forms = ["shifted", "grouped"] if args.grouped else ["shifted"]
    px_torch = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    runs, first_call = {}, {}
    for form in forms:
        vision.depthwise_form = form
        graphdef, state = nnx.split(vision)
        fn = jax.jit(lambda s, x, g=graphdef: l2_normalize(nnx.merge(g, s)(x)))
        runs[f"jax_{form}"] = lambda fn=fn, state=state: np.asarray(jax.block_until_ready(fn(state, pixels)))
        t0 = time.perf_counter()
        runs[f"jax_{form}"]()
        first_call[form] = time.perf_counter() - t0

    def run_torch():
        with torch.inference_mode():
            z = hf.get_image_features(pixel_values=px_torch).pooler_output
            return (z / z.norm(dim=-1, keepdim=True)).numpy()
    runs["torch"] = run_torch
    run_torch()
    return {"jax_first_call_s (compile + 1 run)": first_call, **time_alternating(runs, args.reps, args.batch)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gain", type=float, default=1.3)
    ap.add_argument("--grouped", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_align.json")))
    args = ap.parse_args()
    import jax
    import numpy as np
    import torch
    import transformers

    threads = os.cpu_count()
    torch.set_num_threads(threads)
    res = {"question": "ALIGN align-base shapes: parity with transformers' AlignModel, and images/s of our jitted "
                       "image tower vs AlignVisionModel on this CPU", "date": datetime.date.today().isoformat(),
           "batch": args.batch, "reps": args.reps, "gain": args.gain, "image_size": 289, "torch_threads": threads,
           "load_average_1min_at_start": os.getloadavg()[0]}
    from adapt.models.align import from_tensors

    hf, cfg = build_torch(args.gain)
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(args.batch, 1, 1, 3)) + 0.5 * rng.normal(size=(args.batch, 289, 289, 3))
    pixels = pixels.astype(np.float32)
    ids = np.random.default_rng(4).integers(1000, 30522, size=(2, 64)).astype(np.int32)
    ids[:, 0], mask = 101, np.ones((2, 64), np.int32)  # [CLS] first; text 0 padded after 9 tokens
    ids[0, 9:], mask[0, 9:] = 0, 0
    ref = torch_references(hf, pixels, ids, mask)
    model = from_tensors({k: v.numpy() for k, v in hf.state_dict().items()}, cfg, "align-base shapes (in memory)")
    res["parity"] = parity(model, ref, pixels, ids, mask)
    print(json.dumps(res["parity"]), flush=True)
    vision, hf.text_model = model.vision, None  # the text towers are done with: under 3 GiB for the timing
    del model
    gc.collect()
    res["throughput"] = bench(vision, hf, pixels, args)
    res.update(versions={"jax": jax.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                         "python": platform.python_version()},
               cpu=platform.processor() or platform.machine(), cores=threads,
               load_average_1min_at_end=os.getloadavg()[0])
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
