"""ALIGN (Hugging Face `AlignModel` folders, e.g. kakaobrain/align-base) as a frozen model.

    model = load_align("/path/to/align-base")    # config.json, model.safetensors | pytorch_model.bin, vocab
    img = model.encode_images(pixels)            # (B, S, S, 3) -> (B, D), jit-able
    txt = model.encode_texts(["a photo of a cat"])   # -> np.ndarray (1, D)
    logits = model.logit_scale * img @ txt.T     # = AlignModel's logits_per_image

Towers, as transformers' `AlignModel` (5.25) computes its embeddings:
- image: `AlignVisionModel`'s pooled output (the mean of the last EfficientNet block's map,
  `adapt.models.align_vision`), with NO projection: D is the tower's last width (640 for align-base,
  checked equal to `projection_dim`);
- text: BERT (`adapt.models.minilm.BertEncoder`, post-LN, exact GELU), the [CLS] (first) hidden state
  through `text_projection` (a Linear with bias); BERT's tanh pooler is not used;
- both L2-normalised; `logit_scale` = 1 / `temperature` (AlignModel divides cosines by its learned
  temperature), `logit_bias` = 0.0.

What differs for methods: ALIGN was trained with a softmax contrastive loss (cross-entropy with label
smoothing 0.1 both ways), so it is a softmax model like CLIP: zero-shot probabilities are
softmax(logit_scale * cos), no bias. Its temperature is learned, not clipped at CLIP's 100: use
`model.logit_scale`, never a hard-coded 100. The image embedding is an average of conv features, not
a class token: there are no patch tokens, so the VPT / CoOp hooks of CLIP and the patch-level methods
(MuSc) are not available; methods that need them check with hasattr and refuse.

Deviation from the processor: images are resized on the shorter side and centre-cropped like every
other model here (EfficientNetImageProcessor resizes to a square, then centre-crops), so non-square
images see a crop instead of a squeeze; square images get the same pixels up to the resize filter.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.models import align_load, checkpoint
from adapt.models.align_load import AlignConfig
from adapt.models.align_vision import AlignVisionTower
from adapt.models.base import Preprocess
from adapt.models.clip import jit_call, l2_normalize
from adapt.models.minilm import BertEncoder, Dense


class BertTokenizer:
    """Texts -> ids and attention mask `(N, T)` int32, padded to T and truncated, by the folder's tokenizer."""

    def __init__(self, folder: Path):
        if not any((folder / n).is_file() for n in align_load.TOKENIZER_FILES):
            raise FileNotFoundError(f"ALIGN checkpoint folder {folder}: no tokenizer files (needs tokenizer.json "
                                    "or vocab.txt, BERT WordPiece); copy the tokenizer files of the checkpoint "
                                    "into the folder")
        from transformers import AutoTokenizer  # local: transformers takes seconds to import

        self.backend, self.source = AutoTokenizer.from_pretrained(str(folder), local_files_only=True), str(folder)

    @property
    def vocab_size(self) -> int:
        return len(self.backend)

    def __call__(self, texts: Sequence[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        enc = self.backend(list(texts), padding="max_length", max_length=length, truncation=True)
        ids = np.asarray(enc["input_ids"], np.int32).reshape(len(texts), length)
        return ids, np.asarray(enc["attention_mask"], np.int32).reshape(len(texts), length)


class AlignModel(nnx.Module):
    """ALIGN image + text model implementing the FrozenModel protocol (adapt.models.base)."""

    logit_bias = 0.0  # softmax-trained

    def __init__(self, cfg: AlignConfig, *, rngs: nnx.Rngs | None):
        """Random image weights from `rngs` (text weights zero); `rngs=None`: a skeleton for `load_align`."""
        self.cfg = cfg
        self.vision = AlignVisionTower(cfg.vision, rngs=rngs)
        # the skeleton's text weights are abstract (no 440 MB of zeros at BERT base before loading)
        make_text = lambda: (BertEncoder(cfg.text), Dense(cfg.text.hidden, cfg.projection_dim))  # noqa: E731
        self.text, self.text_projection = make_text() if rngs is not None else nnx.eval_shape(make_text)
        self.model_id, self.weights_hash = "align:random", "random"
        s = cfg.vision.image_size
        self.preprocess = Preprocess(image_size=s, resize_size=s, mean=(0.5,) * 3, std=(0.5,) * 3)
        self.embed_dim = cfg.embed_dim
        self.logit_scale = 1.0
        self.tokenizer: BertTokenizer | None = None

    def encode_images(self, pixels: jax.Array, normalize: bool = True) -> jax.Array:
        """`(B, H, W, 3)` preprocessed pixels -> `(B, D)` (rows L2-normalised by default)."""
        z = self.vision(pixels)
        return l2_normalize(z) if normalize else z

    def encode_tokens(self, ids: jax.Array, mask: jax.Array, normalize: bool = True) -> jax.Array:
        """ids, attention mask `(N, T)` -> `(N, D)`: the projected [CLS] hidden state."""
        z = self.text_projection(self.text(ids, mask)[:, 0])
        return l2_normalize(z) if normalize else z

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.tokenizer is None:
            raise ValueError("this AlignModel has no tokenizer; load it with load_align(path)")
        return self.tokenizer(texts, min(align_load.TEXT_LENGTH, self.cfg.text.max_positions))

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Texts -> `(n, D)` float32, L2-normalised. Batches padded to a power of two rows (few compiles)."""
        if isinstance(texts, str):
            raise TypeError("encode_texts takes a list of strings, not one string")
        out = np.zeros((len(texts), self.embed_dim), np.float32)
        if not len(texts):
            return out
        ids, mask = self.tokenize(list(texts))
        for s in range(0, len(ids), batch_size):
            n = len(ids[s : s + batch_size])
            rows = min(batch_size, 1 << max(0, n - 1).bit_length())
            pad_ids, pad_mask = np.zeros((rows, ids.shape[1]), np.int32), np.zeros((rows, ids.shape[1]), np.int32)
            pad_ids[:n], pad_mask[:n] = ids[s : s + n], mask[s : s + n]
            pad_mask[n:, 0] = 1  # padding rows attend to one token: no all-masked softmax
            z = jit_call(self, "encode_tokens", jnp.asarray(pad_ids), jnp.asarray(pad_mask))
            out[s : s + n] = np.asarray(z)[:n]
        return out


def from_tensors(tensors: dict[str, np.ndarray], cfg: AlignConfig, where: str = "ALIGN state dict") -> AlignModel:
    """Hugging Face-named float32 tensors -> AlignModel (no tokenizer, default preprocessing)."""
    align_load.check_tensors(tensors, cfg, where)
    graphdef, state = nnx.split(AlignModel(cfg, rngs=None))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, align_load.to_pure_dict(tensors, cfg)))
    model = nnx.merge(graphdef, state)
    model.logit_scale = float(1.0 / tensors["temperature"].reshape(()))
    return model


def load_align(path: str | Path) -> AlignModel:
    """A Hugging Face ALIGN folder -> AlignModel. Missing tokenizer files: FileNotFoundError; missing or
    misshapen tensors, a tokenizer whose size is not the text vocab_size: ValueError."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"ALIGN checkpoint folder {folder} does not exist")
    cfg = align_load.parse_config(checkpoint.read_config(folder, "ALIGN"))
    tokenizer = BertTokenizer(folder)
    if cfg.text.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"text vocab_size {cfg.text.vocab_size} in {folder}/config.json differs from "
                         f"the tokenizer's {tokenizer.vocab_size}")
    tensors, digest = align_load.read_weights(folder)
    model = from_tensors(tensors, cfg, str(folder))
    model.model_id = f"align:{folder.name}"
    model.weights_hash = digest[:16]  # sha256 of the weight files, first 16 hex digits
    model.preprocess = Preprocess(**align_load.read_preprocess(folder, cfg.vision.image_size))
    model.tokenizer = tokenizer
    return model
