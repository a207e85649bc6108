"""The adapted classifier as a folder others load and deploy.

  <dir>/classifier.safetensors   head weights (and center), plus any tuned model parameters
  <dir>/meta.json                format version, model id + weights hash + where to load it,
                                 preprocessing, class names, head, method and its config, metrics

Written atomically: everything goes to a temp folder beside the target, then one rename.
`load(dir).predict(images)` embeds images with the same frozen model and applies the same head.
"""
from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from adapt import models
from adapt.core import mesh as mesh_lib
from adapt.core.method import Head
from adapt.data import BadImage, decode_image
from adapt.features.embed import make_encoder
from adapt.models.preprocess import to_pixels
from adapt.output import staging as outputs

FORMAT_VERSION = 1


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save(path, *, head: Head, class_names, model, model_source: dict, method: str, config_json: str,
         metrics: dict, embed_batch: int = 64, extra_tensors: dict | None = None,
         model_setup: dict | None = None) -> Path:
    """Writes the artifact folder at `path` atomically and returns it.

    extra_tensors: tuned model parameters by nnx path ("image/head_bn/scale"), written into the
    model on load; model_setup: what to install first (e.g. {"visual_prompts": 16}).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; the artifact is meant to be shared
    tensors = {"head.weights": np.ascontiguousarray(head.weights, np.float32)}
    if head.center is not None:
        tensors["head.center"] = np.ascontiguousarray(head.center, np.float32)
    if head.bias is not None:
        tensors["head.bias"] = np.ascontiguousarray(head.bias, np.float32)
    for k, v in (extra_tensors or {}).items():
        tensors[f"params.{k}"] = np.ascontiguousarray(v)
    save_file(tensors, str(tmp / "classifier.safetensors"))
    meta = dict(
        format_version=FORMAT_VERSION,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        model=dict(id=model.model_id, weights_hash=model.weights_hash, **model_source),
        preprocess=json.loads(model.preprocess.to_json()),
        class_names=list(class_names),
        head=dict(view=head.view, normalize=head.normalize, scale=float(head.scale)),
        embed_batch=int(embed_batch), model_setup=model_setup or {},
        method=method, config=json.loads(config_json), metrics=metrics)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=float))
    _swap_in(tmp, path)
    return path


def _swap_in(tmp: Path, path: Path) -> None:
    """Replaces `path` by the folder `tmp`; one writer at a time (a lock file beside it), so that
    concurrent saves to one path end with one complete artifact and no temporary folders."""
    try:
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Classifier:
    """A loaded artifact: `predict(images)` -> (class ids (N,), probabilities (N, C))."""

    def __init__(self, path):
        self.path = path = Path(path)
        outputs.finish_swap_for_reading(path.parent)  # a run killed while swapping its outputs in
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path} is not an adapted-classifier folder (no meta.json)")
        try:
            self.meta = json.loads(meta_file.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{meta_file} is not valid JSON ({e}): the artifact is damaged; copy it "
                             "again or rerun the job") from None
        if not isinstance(self.meta, dict) or self.meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{meta_file}: artifact format {_get(self.meta, 'format_version')} is not "
                             f"supported (this engine reads format {FORMAT_VERSION})")
        tensor_file = path / "classifier.safetensors"
        try:
            tensors = load_file(str(tensor_file))
        except Exception as e:  # noqa: BLE001  (truncated or corrupt file: SafetensorError, ...)
            raise ValueError(f"{tensor_file} cannot be read ({type(e).__name__}: {e}): the artifact is "
                             "damaged or truncated; copy it again or rerun the job") from None
        self.head = checked_head(tensors, self.meta, meta_file)
        self.params = {k[7:]: v for k, v in tensors.items() if k.startswith("params.")}
        self.class_names = list(self.meta["class_names"])
        self._model = self._encode = None

    def model(self):
        if self._model is None:
            m = self.meta["model"]
            model = models.load_model(kind=m.get("kind", "auto"), path=m.get("path", ""), arch=m.get("arch", ""))
            if model.weights_hash != m["weights_hash"]:
                raise ValueError(f"the model at {m.get('path') or m['id']} has weights hash "
                                 f"{model.weights_hash}, the artifact was made with {m['weights_hash']}")
            install_tuned(model, self.meta.get("model_setup") or {}, self.params)
            self._model = model
        return self._model

    def features(self, images, batch_size: int | None = None, skip_bad: bool = False):
        """Images (paths or PIL images) -> the head's view (M, d). Undecodable images raise, or with
        `skip_bad` are left out: then returns (features (M, d), kept (M,) indices, [(image, reason)])."""
        model = self.model()
        mesh = mesh_lib.make_mesh()
        if self._encode is None:
            self._encode = make_encoder(model, mesh)
        batch = mesh_lib.padded_size(batch_size or self.meta.get("embed_batch", 64), mesh)
        rows, kept, skipped = [], [], []
        for s in range(0, len(images), batch):
            part = []
            for j, im in enumerate(images[s:s + batch], start=s):
                try:
                    part.append(im if hasattr(im, "convert") else decode_image(im))
                    kept.append(j)
                except BadImage as e:
                    if not skip_bad:
                        raise
                    skipped.append((im, str(e)))
            if not part:
                continue
            pixels = np.zeros((batch, model.preprocess.image_size, model.preprocess.image_size, 3),
                              np.float32)
            pixels[: len(part)] = np.stack([to_pixels(im, model.preprocess) for im in part])
            rows.append(self._checked_view(self._encode(pixels))[: len(part)])
        d = self.head.weights.shape[1]
        x = np.concatenate(rows) if rows else np.zeros((0, d), np.float32)
        return (x, np.asarray(kept, np.int64), skipped) if skip_bad else x

    def _checked_view(self, out: dict) -> np.ndarray:
        """The head's view of one encoded batch; ValueError if meta.json and the model disagree."""
        view, d, where = self.head.view, self.head.weights.shape[1], self.path / "meta.json"
        if view not in out:
            raise ValueError(f"{where}: head view {view!r} is not one the model gives ({sorted(out)}): "
                             "the artifact does not match its model; copy it again or rerun the job")
        if out[view].shape[1] != d:
            raise ValueError(f"{where}: the head takes {d} features, view {view!r} has "
                             f"{out[view].shape[1]}: the artifact does not match its model; copy it "
                             "again or rerun the job")
        return out[view]

    def predict(self, images, batch_size: int | None = None):
        probs = self.head.probs(self.features(list(images), batch_size))
        return probs.argmax(1), probs

    def predict_files(self, images, batch_size: int | None = None):
        """Like predict, skipping what cannot be decoded: (kept (M,), pred (M,), probs (M, C),
        [(image, reason)])."""
        x, kept, skipped = self.features(list(images), batch_size, skip_bad=True)
        probs = self.head.probs(x)
        return kept, probs.argmax(1), probs, skipped


def _get(d, key):
    return d.get(key) if isinstance(d, dict) else None


def checked_head(tensors: dict, meta: dict, meta_file: Path) -> Head:
    """The head from the tensors and meta.json, after checking that they agree: ValueError (one line
    naming the file and the field) otherwise."""
    def bad(what):
        return ValueError(f"{meta_file}: {what}; the artifact is damaged or was edited: copy it again "
                          "or rerun the job")

    w = tensors.get("head.weights")
    if w is None or w.ndim != 2 or not w.size or not np.isfinite(w).all():
        raise bad("classifier.safetensors has no finite 2-D head.weights")
    names, head = meta.get("class_names"), meta.get("head")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) != len(w):
        raise bad(f"class_names must be a list of {len(w)} strings (one per row of head.weights), "
                  f"got {str(names)[:80]}")
    if not isinstance(head, dict) or not isinstance(head.get("view"), str) \
            or not isinstance(head.get("normalize"), bool):
        raise bad("head must hold a view name (string) and normalize (true/false)")
    scale = head.get("scale")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) \
            or scale <= 0:
        raise bad(f"head.scale must be a positive finite number, got {scale!r}")
    center = tensors.get("head.center")
    if center is not None and (center.shape != (w.shape[1],) or not np.isfinite(center).all()):
        raise bad(f"head.center must be {w.shape[1]} finite numbers, got shape {center.shape}")
    bias = tensors.get("head.bias")
    if bias is not None and (bias.shape != (w.shape[0],) or not np.isfinite(bias).all()):
        raise bad(f"head.bias must be {w.shape[0]} finite numbers, got shape {bias.shape}")
    return Head(w, head["view"], center, head["normalize"], float(scale), bias)


def apply_params(model, params: dict) -> None:
    """Writes tensors named by nnx path ("image/head_bn/scale", "vision/prompts") into `model`."""
    for name, value in params.items():
        obj = model
        for part in name.split("/"):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part, None)
            if obj is None:
                raise ValueError(f"artifact parameter {name!r} does not exist in the model")
        if tuple(obj[...].shape) != tuple(value.shape):
            raise ValueError(f"artifact parameter {name!r} has shape {value.shape}, "
                             f"the model's is {tuple(obj[...].shape)}")
        obj[...] = value


def install_tuned(model, setup: dict, params: dict) -> None:
    """Makes the frozen `model` the artifact's: installs what `setup` names (visual prompts), writes
    the tuned `params` and, when there are any, records their hash as `model.tuned_hash` (part of
    the embedding cache key, adapt/features/embed.py)."""
    if setup.get("visual_prompts"):
        model.add_visual_prompts(int(setup["visual_prompts"]), deep=bool(setup.get("deep", False)))
    apply_params(model, params)
    if params:
        h = hashlib.sha256(json.dumps(setup, sort_keys=True).encode())
        for name in sorted(params):
            h.update(name.encode() + np.ascontiguousarray(params[name]).tobytes())
        model.tuned_hash = h.hexdigest()[:16]


def load(path) -> Classifier:
    return Classifier(path)
