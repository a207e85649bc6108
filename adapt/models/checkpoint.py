"""Reading a Hugging Face checkpoint folder, shared by the CLIP and DINO loaders.

A folder holds `config.json` and `model.safetensors` (or shards named by
`model.safetensors.index.json`). `read_weights` gives every tensor as float32 numpy and the sha256
of the files' bytes; `layer_norm`, `linear`, `fused_linear` and `patch_kernel` map Hugging Face (PyTorch-layout)
tensors onto our parameter trees.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def read_config(folder: Path, what: str) -> dict:
    """The folder's config.json as a dict; `what` names the model in the error ("CLIP")."""
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {what} checkpoint folder {folder}")
    return json.loads(path.read_text())


def weight_files(folder: Path, what: str) -> list[Path]:
    """`model.safetensors`, or the shards named by `model.safetensors.index.json` (all present)."""
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = [folder / n for n in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{what} checkpoint folder {folder}: shards {missing} named by "
                                    f"{index.name} are missing")
        return files
    extra = " (found pytorch_model.bin: convert it to safetensors)" if (folder / "pytorch_model.bin").exists() else ""
    raise FileNotFoundError(f"no model.safetensors in {what} checkpoint folder {folder}{extra}")


def files_sha256(files: list[Path]) -> str:
    """sha256 (hex) over the bytes of the files in order."""
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()


def read_tensors(files: list[Path]) -> dict[str, np.ndarray]:
    """All tensors of the files as float32 numpy arrays (bf16/fp16 checkpoints are upcast)."""
    out = {}
    for f in files:
        try:
            part = load_file(str(f))
        except (TypeError, ValueError):  # numpy has no bfloat16; the flax reader has
            with safe_open(str(f), framework="flax") as fh:
                part = {k: fh.get_tensor(k) for k in fh.keys()}
        out.update({k: np.asarray(v, np.float32) for k, v in part.items()})
    return out


def read_weights(files: list[Path]) -> tuple[dict[str, np.ndarray], str]:
    """(`read_tensors(files)`, `files_sha256(files)`), the hash computed while the tensors load."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # hashing releases the GIL
        digest = pool.submit(files_sha256, files)
        tensors = read_tensors(files)
    return tensors, digest.result()


def layer_norm(t: dict[str, np.ndarray], name: str) -> dict:
    """HF LayerNorm `name` -> {"scale": (D,), "bias": (D,)}."""
    return {"scale": t[f"{name}.weight"], "bias": t[f"{name}.bias"]}


def linear(t: dict[str, np.ndarray], name: str, bias: bool = True) -> dict:
    """HF Linear `name`, weight (out, in) -> {"kernel": (in, out)[, "bias": (out,)]}."""
    d = {"kernel": t[f"{name}.weight"].T}
    if bias:
        d["bias"] = t[f"{name}.bias"]
    return d


def fused_linear(t: dict[str, np.ndarray], names: list[str]) -> dict:
    """HF Linears `names` on one input (q, k, v) -> one {"kernel": (in, sum of outs), "bias"}; a
    missing bias reads as zeros."""
    zeros = lambda n: np.zeros(t[f"{n}.weight"].shape[0], np.float32)  # noqa: E731
    return {"kernel": np.concatenate([t[f"{n}.weight"].T for n in names], axis=1),
            "bias": np.concatenate([t.get(f"{n}.bias", zeros(n)) for n in names])}


def patch_kernel(conv: np.ndarray) -> np.ndarray:
    """A patch-embedding Conv2d weight (D, 3, p, p) -> the (p * p * 3, D) kernel of flattened
    (p, p, 3) patches."""
    width, _, p, _ = conv.shape
    return conv.transpose(2, 3, 1, 0).reshape(p * p * 3, width)
