"""The adapted classifier as a folder others load and deploy.

  <dir>/classifier.safetensors   head weights (and center), plus any tuned model parameters
  <dir>/meta.json                format version, model id + weights hash + where to load it,
                                 preprocessing, class names, head, method and its config, metrics

Written atomically: everything goes to a temp folder beside the target, then one rename.
`load(dir).predict(images)` embeds images with the same frozen model and applies the same head.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from adapt.method import Head

FORMAT_VERSION = 1


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
    tensors = {"head.weights": np.ascontiguousarray(head.weights, np.float32)}
    if head.center is not None:
        tensors["head.center"] = np.ascontiguousarray(head.center, np.float32)
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
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old.{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


class Classifier:
    """A loaded artifact: `predict(images)` -> (class ids (N,), probabilities (N, C))."""

    def __init__(self, path):
        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path} is not an adapted-classifier folder (no meta.json)")
        self.meta = json.loads(meta_file.read_text())
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"artifact format {self.meta.get('format_version')} is not supported "
                             f"(this engine reads format {FORMAT_VERSION})")
        tensors = load_file(str(path / "classifier.safetensors"))
        h = self.meta["head"]
        self.head = Head(tensors["head.weights"], h["view"], tensors.get("head.center"),
                         h["normalize"], h["scale"])
        self.params = {k[7:]: v for k, v in tensors.items() if k.startswith("params.")}
        self.class_names = self.meta["class_names"]
        self._model = self._encode = None

    def model(self):
        if self._model is None:
            from adapt.models import load_model

            m = self.meta["model"]
            model = load_model(kind=m.get("kind", "auto"), path=m.get("path", ""))
            if model.weights_hash != m["weights_hash"]:
                raise ValueError(f"the model at {m.get('path') or m['id']} has weights hash "
                                 f"{model.weights_hash}, the artifact was made with {m['weights_hash']}")
            setup = self.meta.get("model_setup") or {}
            if setup.get("visual_prompts"):
                model.add_visual_prompts(int(setup["visual_prompts"]), deep=bool(setup.get("deep", False)))
            apply_params(model, self.params)
            self._model = model
        return self._model

    def features(self, images, batch_size: int | None = None) -> np.ndarray:
        """Images (paths or PIL images) -> the head's view (N, d). Undecodable images raise."""
        from adapt import mesh as mesh_lib
        from adapt.data import decode_image
        from adapt.embed import make_encoder
        from adapt.preprocess import to_pixels

        model = self.model()
        mesh = mesh_lib.make_mesh()
        if self._encode is None:
            self._encode = make_encoder(model, mesh)
        batch = mesh_lib.padded_size(batch_size or self.meta.get("embed_batch", 64), mesh)
        rows = []
        for s in range(0, len(images), batch):
            part = [im if hasattr(im, "convert") else decode_image(im) for im in images[s:s + batch]]
            pixels = np.zeros((batch, model.preprocess.image_size, model.preprocess.image_size, 3),
                              np.float32)
            pixels[: len(part)] = np.stack([to_pixels(im, model.preprocess) for im in part])
            rows.append(self._encode(pixels)[self.head.view][: len(part)])
        return np.concatenate(rows)

    def predict(self, images, batch_size: int | None = None):
        probs = self.head.probs(self.features(list(images), batch_size))
        return probs.argmax(1), probs


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


def load(path) -> Classifier:
    return Classifier(path)
