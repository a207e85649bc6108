"""MuSc: zero-shot anomaly scoring of an unlabeled pool by mutual scoring (spec musc.md).

Paper: Li, Huang, Xue, Zhou, "MuSc: Zero-Shot Industrial Anomaly Classification and Segmentation
with Mutual Scoring of the Unlabeled Images", ICLR 2024 (official code: xrli-U/MuSc on GitHub).

Pipeline on cached patch maps t^l (N, h_l, w_l, C_l) of L layers and image embeddings F (N, D):
  LNAMD  z^{l,r} = normalize(box_r(t^l - mean(t^l)))        per image, zero-padded r x r window
  MSM    a^{l,r}_i(p) = interval mean over j != i of min_q |z_ip - z_jq|   (adapt.anomaly.msm, blocked)
  fuse   A_i = mean_l upsample(mean_r a^{l,r}_i) to the input size (bilinear, align_corners=True)
  score  s_i = max A_i;  RsCIN: s_hat = mean_k P_k s_tilde over image kNN windows k_list

Layers of different grid sizes (CNN stage maps) are scored on their own grid and fused after
upsampling; for equal grids this equals the official average-then-upsample (upsampling is linear).
`make(config).run(AnomalyInputs)` extracts the patch maps of the layers it wants (the model's
defaults unless set, adapt.anomaly.patches) and scores them; the anomaly job (adapt.anomaly.job)
around it sets up the pool and the model and writes metrics, plots and the report.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from adapt.anomaly import msm, patches
from adapt.core import mesh as mesh_lib
from adapt.core.method import ANOMALY, AnomalyInputs, AnomalyOutputs, Method, PoolTooSmall
from adapt.core.settings import parse_method_args

DESCRIPTION = "zero-shot anomaly scoring of the pool by mutual patch scoring (MuSc)"
MIN_POOL = 5
JOB_KEYS = ("save_maps", "plot_images", "normal_class", "rscin")  # read by the anomaly job or make()


@dataclasses.dataclass(frozen=True)
class Settings:
    """MuSc hyperparameters (defaults: the official code, except where musc.md deviates).

    layers: model layer ids (CLIP: 0-based block indices, as `patch_features` takes them; offline
      CNN: stage strides); () = the model's default (adapt.anomaly.patches.default_layers).
    degrees: LNAMD r values (odd); () = the model's default (adapt.anomaly.patches.default_degrees).
    frac, frac_min: the MSM rank window [frac_min, frac) of the N - 1 other images (the config's
      frac = 0 leaves it to the model: adapt.anomaly.patches.default_window, 0.1 on the offline CNN).
    rounding: floor | floor_min1 | ceil (see adapt.anomaly.msm.rank_window).
    k_list: RsCIN windows; () or (0,) switches RsCIN off (the config's rscin = auto leaves on/off
      to the model: adapt.anomaly.patches.default_rscin, off on the offline CNN).
    schedule: auto | symmetric | stream | same_position. precision: float32 | bfloat16.
    block: images per MSM block (0 = from tile_mb); tile_mb: the similarity-tile budget (0 = 8 MB
      on CPU, 256 MB on accelerators); table_mb: the auto schedule's budget for the symmetric
      (N/D, P, N) table per device.
    image_size: pixel-map size (0 = the model's input size).
    """

    layers: tuple[int, ...] = ()
    degrees: tuple[int, ...] = ()
    frac: float = 0.3
    frac_min: float = 0.0
    rounding: str = "floor_min1"
    k_list: tuple[int, ...] = (1, 2, 3)
    schedule: str = "auto"
    precision: str = "float32"
    block: int = 0
    tile_mb: float = 0.0
    table_mb: float = 1024.0
    image_size: int = 0

    def __post_init__(self):
        bad = [r for r in self.degrees if int(r) < 1 or int(r) % 2 == 0]
        if bad:
            raise ValueError(f"LNAMD degrees must be odd and >= 1, got {bad}")
        if not 0 <= self.frac_min < self.frac:
            raise ValueError(f"need 0 <= frac_min < frac, got {self.frac_min}, {self.frac}")
        if self.precision not in msm.PRECISIONS:
            raise ValueError(f"precision must be one of {msm.PRECISIONS}, not {self.precision!r}")
        msm.choose_schedule(self.schedule, 1, 1, 1, 0.0)  # validates the name
        msm.rank_window(10, self.frac, self.frac_min, self.rounding)  # validates rounding


def settings_from_config(config) -> Settings:
    """method_args -> Settings; the job's own keys (JOB_KEYS) pass through unchecked here."""
    args = dict(config.method_args.items())
    if "frac" in args and not args["frac"]:
        del args["frac"]  # 0 = the model's default window (adapt.anomaly.patches.default_window)
    if str(args.get("rscin", "auto")) == "off":
        args["k_list"] = ()
    return parse_method_args(Settings, args, "musc", job_keys=JOB_KEYS)


@functools.partial(jax.jit, static_argnames="r")
def lnamd(maps: jax.Array, r: int) -> jax.Array:
    """maps (N, h, w, C) -> (N, h*w, C): per-image mean removed, r x r zero-padded box sum, unit rows.

    Equals the official LayerNorm + unfold + adaptive average pool: the LayerNorm scale and the
    1/r^2 cancel in the final normalisation.
    """
    n, h, w, c = maps.shape
    x = maps.astype(jnp.float32)
    x = x - x.mean(axis=(1, 2, 3), keepdims=True)
    if r > 1:
        pad = (r - 1) // 2
        x = lax.reduce_window(x, 0.0, lax.add, (1, r, r, 1), (1, 1, 1, 1),
                              ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    x = x.reshape(n, h * w, c)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def layer_scores(maps: np.ndarray, mesh, s: Settings, degrees) -> tuple[np.ndarray, str]:
    """maps (N, h, w, C) of one layer -> ((N, h, w) patch scores averaged over r, schedule used).

    The pool is padded to devices x blocks and sharded over the mesh's `pool` axis.
    """
    n, h, w, _ = maps.shape
    d = mesh.devices.size
    lo, hi = msm.rank_window(n, s.frac, s.frac_min, s.rounding)
    block, n_pad = msm.layout(n, d, s.block or msm.auto_block(h * w, s.tile_mb))
    if s.schedule == "same_position":
        block, n_pad = msm.layout(n, d, n)
    schedule = msm.choose_schedule(s.schedule, n_pad, h * w, d, s.table_mb)
    x = np.zeros((n_pad, *maps.shape[1:]), np.float32)
    x[:n] = maps
    x, _ = mesh_lib.shard_rows(x, mesh)
    total = 0.0
    for r in degrees:
        total = total + msm.mutual_scores(lnamd(x, int(r)), n, mesh, lo=lo, hi=hi, block=block,
                                          schedule=schedule, precision=s.precision)
    return np.asarray(total / len(degrees))[:n].reshape(n, h, w), schedule


def upsample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation weights with align_corners=True (end points align)."""
    pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    left = np.clip(np.floor(pos).astype(int), 0, max(n_in - 2, 0))
    frac = pos - left
    m = np.zeros((n_out, n_in), np.float64)
    m[np.arange(n_out), left] = 1 - frac
    if n_in > 1:
        m[np.arange(n_out), left + 1] += frac
    return m.astype(np.float32)


@functools.partial(jax.jit, static_argnames="size")
def _upsample_sum(maps: tuple, size: tuple[int, int]) -> jax.Array:
    out = 0.0
    for a in maps:
        uh = jnp.asarray(upsample_matrix(a.shape[1], size[0]))
        uw = jnp.asarray(upsample_matrix(a.shape[2], size[1]))
        out = out + jnp.einsum("hi,nij,wj->nhw", uh, a, uw, precision=lax.Precision.HIGHEST)
    return out / len(maps)


def fuse(layer_maps: list, size: tuple[int, int], mesh=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer maps (N, h_l, w_l) -> pixel maps (N, H, W) and image scores (N,) = map max.

    With a mesh, the images are sharded over its `pool` axis while upsampling.
    """
    n = layer_maps[0].shape[0]
    if mesh is not None:
        layer_maps = [mesh_lib.shard_rows(np.asarray(a, np.float32), mesh)[0] for a in layer_maps]
    maps = _upsample_sum(tuple(jnp.asarray(a) for a in layer_maps), tuple(int(v) for v in size))
    return np.asarray(maps)[:n], np.asarray(maps.max(axis=(1, 2)))[:n]


@functools.partial(jax.jit, static_argnames="k_list")
def rscin(scores: jax.Array, embeddings: jax.Array, k_list: tuple[int, ...]) -> jax.Array:
    """Re-scoring with image neighbourhoods. scores (N,), embeddings (N, D) unit rows -> (N,).

    s~ = min-max normalised scores; for each k: keep the k largest entries of each row of F F^T
    (self included), zero the rest, row-normalise to P_k; return mean_k P_k s~.
    """
    n = scores.shape[0]
    span = scores.max() - scores.min()
    s = jnp.where(span > 0, (scores - scores.min()) / jnp.where(span > 0, span, 1.0), 0.0)
    sim = jnp.dot(embeddings, embeddings.T, precision=lax.Precision.HIGHEST)
    out = 0.0
    for k in k_list:
        k = min(int(k), n)
        _, idx = lax.top_k(sim, k)
        keep = jnp.zeros_like(sim).at[jnp.arange(n)[:, None], idx].set(1.0)
        w = sim * keep
        out = out + (w @ s) / w.sum(axis=1)
    return out / len(k_list)


def score(patch_maps: list, embeddings, image_size: tuple, mesh, s: Settings) -> AnomalyOutputs:
    """MuSc on one pool: patch maps, one (N, h_l, w_l, C_l) float32 array per layer, and unit image
    embeddings (N, D) -> image scores, RsCIN scores and pixel maps of size image_size (H, W)."""
    n = patch_maps[0].shape[0]
    if n < MIN_POOL:
        raise PoolTooSmall(f"MuSc scores an image against the other images of its pool and needs at "
                           f"least {MIN_POOL} images; this pool has {n}. Add images of the same "
                           "category (the official code returns NaN for 4 or fewer).")
    degrees = tuple(s.degrees or (1, 3, 5))
    per_layer, schedules = zip(*(layer_scores(m, mesh, s, degrees) for m in patch_maps))
    maps, raw = fuse(per_layer, image_size, mesh)
    raw = raw.astype(np.float64)
    use_rscin = len(s.k_list) > 0 and 0 not in s.k_list
    final = raw
    if use_rscin:
        emb = jnp.asarray(embeddings, jnp.float32)
        final = np.asarray(rscin(jnp.asarray(raw, jnp.float32), emb, tuple(s.k_list)), np.float64)
    lo, hi = msm.rank_window(n, s.frac, s.frac_min, s.rounding)
    info = dict(musc_layers=list(s.layers), musc_degrees=list(degrees), musc_rank_window=[lo, hi],
                musc_k_list=list(s.k_list) if use_rscin else [], musc_precision=s.precision,
                musc_schedule=list(schedules))
    return AnomalyOutputs(final, raw, maps, list(per_layer), info)


def model_scoring_defaults(args, settings: Settings, model) -> dict:
    """MuSc rank window and RsCIN left to the model: frac 0 -> patches.default_window(model);
    rscin auto -> RsCIN (settings.k_list) as patches.default_rscin(model), on -> k_list, off -> none."""
    out = {} if float(args.get("frac", 0.0) or 0.0) else {"frac": patches.default_window(model)}
    rscin = str(args.get("rscin", "auto") or "auto")
    if rscin not in ("auto", "on", "off"):
        raise ValueError(f"method_args.rscin must be auto, on or off, not {rscin!r}")
    if rscin == "off" or (rscin == "auto" and not patches.default_rscin(model)):
        out["k_list"] = ()
    return out


def score_pool(inputs: AnomalyInputs, s: Settings, scoring_args: dict) -> AnomalyOutputs:
    """Patch maps of the pool (the model's default layers and degrees unless set), then `score`."""
    model, e = inputs.model, inputs.embed
    layers = tuple(s.layers) or patches.default_layers(model)
    degrees = tuple(s.degrees) or patches.default_degrees(model)
    feats = patches.extract(model, inputs.pool, inputs.mesh, layers, image_size=s.image_size,
                            cache_root=e.cache_root, batch_size=e.batch_size, chunk_size=e.chunk_size,
                            workers=e.workers, progress=inputs.progress)
    size = feats.image_size
    resolved = dataclasses.replace(s, layers=layers, degrees=degrees,
                                   **model_scoring_defaults(scoring_args, s, model))
    out = score(feats.maps, feats.embeddings, (size, size), inputs.mesh, resolved)
    return out._replace(kept=feats.kept, embeddings=feats.embeddings, skipped=list(feats.skipped),
                        image_size=size)


def make(config) -> Method:
    """The anomaly method; `settings` holds the config's settings before the model fills its defaults."""
    s, args = settings_from_config(config), config.method_args
    scoring_args = {k: args[k] for k in ("frac", "rscin") if k in args}  # "the model's" resolves in run
    return Method("musc", DESCRIPTION, lambda inputs: score_pool(inputs, s, scoring_args), job=ANOMALY,
                  settings=s)
