"""LaFTer: stage 1 against a NumPy restatement of the official text-classifier loop, and the method on a
tiny random CLIP (called directly, no engine: the engine path is covered by tests/test_conformance.py
and tests/test_small_pools.py): the declared tunable set, a killed run that resumes to the identical
output, 1 vs 8 devices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from adapt.core.config import load_config
from adapt.features.text import ClassTexts
from adapt.models.clip import CLIPModel
from adapt.models.clip_load import ClipConfig
from adapt.models.clip_text import TextConfig
from adapt.models.clip_vision import VisionConfig
from adapt.models.tokenizer import load_tokenizer
from adapt.output.artifact import install_tuned
from adapt.tuning import loop as tuning
from adapt.tuning import text_classifier as tc
from adapt.tuning.prompted import pool_pixels
from methods import lafter
from tests.method_inputs import pool_inputs

N, C, PX = 16, 3, 16
NAMES = ["red", "green", "blue"]


def _numpy_stage1(t, y, w, noise, lr, wd, smoothing):
    """The official loop restated: for each step, logits = (t + noise_s) W^T, torch's label-smoothed CE
    (mean over rows), its closed-form gradient, torch.optim.AdamW (decoupled decay, bias-corrected)."""
    m, v = np.zeros_like(w), np.zeros_like(w)
    q = (1 - smoothing) * np.eye(w.shape[0])[y] + smoothing / w.shape[0]
    for s, eps in enumerate(noise, start=1):
        xs = t + eps
        z = xs @ w.T
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - q).T @ xs / len(y)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - lr * wd * w - lr * (m / (1 - 0.9 ** s)) / (np.sqrt(v / (1 - 0.999 ** s)) + 1e-8)
    return w


def test_stage1_equals_a_numpy_restatement_with_the_same_noise():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(7, 5)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    y = np.array([0, 0, 1, 1, 2, 2, 2], np.int32)
    key, steps = jax.random.key(3), 6
    got = tc.train_text_classifier(tc.TextSet([""] * 7, t, y), C, steps=steps, lr=0.05, weight_decay=0.01,
                                   noise_std=0.1, smoothing=0.1, key=key)
    init_key, noise_key = tc.keys(key)
    w0 = np.asarray(tc.torch_linear_init(init_key, C, 5), np.float64)
    assert np.abs(w0).max() <= 1 / np.sqrt(5)
    noise = [np.asarray(tc.step_noise(noise_key, s, t.shape, 0.1), np.float64) for s in range(steps)]
    assert not np.allclose(noise[0], noise[1]) and 0.05 < np.std(np.concatenate(noise)) < 0.15
    want = _numpy_stage1(t.astype(np.float64), y, w0, noise, 0.05, 0.01, 0.1)
    np.testing.assert_allclose(got.weights, want, atol=2e-5)
    assert got.history[-1]["epoch"] == steps - 1 and "text_accuracy" in got.history[-1]
    # the same key, the same run (noise draws repeat)
    again = tc.train_text_classifier(tc.TextSet([""] * 7, t, y), C, steps=steps, lr=0.05, weight_decay=0.01,
                                     noise_std=0.1, smoothing=0.1, key=key)
    np.testing.assert_array_equal(got.weights, again.weights)


def _skeleton():
    """A tiny random CLIP as (graph, flat state): one image block (16 px, patch 8), random weights drawn
    with NumPy (seeded; LayerNorm scales 1 + N(0, 0.1))."""
    vision = VisionConfig(width=16, depth=1, heads=2, mlp_dim=32, image_size=PX, patch_size=8)
    text = TextConfig(width=16, depth=1, heads=2, mlp_dim=32)
    graph, state = nnx.split(CLIPModel(ClipConfig(vision, text, embed_dim=8), rngs=None))
    rng = np.random.default_rng(0)
    return graph, [(k, v, (1.0 if k[-1] == "scale" else 0.0) + 0.1 * rng.standard_normal(v.shape).astype(np.float32))
                   for k, v in nnx.to_flat_state(state)]


SKELETON = _skeleton()


def _model():
    """A fresh tiny CLIP with its own variables (every run tunes its model in place), shipped tokenizer."""
    graph, flat = SKELETON
    m = nnx.merge(graph, nnx.from_flat_state([(k, v.replace(jnp.asarray(a))) for k, v, a in flat]))
    m.tokenizer = load_tokenizer(None)
    return m


class _Pool:
    def __init__(self, images):
        self.images = images

    def load(self, i):
        return self.images[i]


@pytest.fixture(scope="module")
def setup():
    """Pool images, frozen pool embeddings x (N, 8) and class embeddings t (C, 8): random unit rows
    (the method only reads them; the tiny model is compiled inside the runs), class texts."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (PX, PX, 3), dtype=np.uint8)) for _ in range(N)]
    x, t = rng.normal(size=(N, 8)).astype(np.float32), rng.normal(size=(C, 8)).astype(np.float32)
    texts = [[f"a photo of {n}.", f"a {n} thing."] for n in NAMES]
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    return images, unit(x), unit(t), texts


def _run(setup, n_devices, workdir, **args):
    images, x, t, texts = setup
    inputs = pool_inputs(x, t, n_devices)
    ct = ClassTexts(weights=t, view_weights=None, view=None, prompts=texts, prompt_weights=[[0.5, 0.5]] * C)
    inputs = inputs._replace(class_texts=ct, class_names=NAMES, model=_model(), pool=_Pool(images),
                             kept=np.arange(N), workdir=workdir, progress=False)
    config = load_config("configs/lafter.py")
    config.method_args.update({**dict(descriptions="none", text_epochs=30, text_lr=0.05, n_prompts=4, epochs=2,
                                      batch_size=8, min_steps_per_epoch=0, lr=0.01, augment="none"), **args})
    return lafter.make(config).run(inputs)


@pytest.fixture(scope="module")
def clean(setup, tmp_path_factory):
    return _run(setup, 1, tmp_path_factory.mktemp("clean"))


def test_only_the_declared_parameters_change_and_the_artifact_reproduces_the_run(setup, clean):
    """Tuned: 4 VPT tokens (1, 4, 16), every vision LayerNorm (pre, post, 2 per block: 4 x 2 x 16) and
    W (3, 8); nothing else of the model moves (`nnx.split` freezes it), and each declared leaf moves."""
    frozen = dict(nnx.to_flat_state(nnx.state(_model(), nnx.Param)))
    ln = {k for k in frozen if k[0] == "vision" and any(n in k for n in ("ln1", "ln2", "pre_ln", "post_ln"))}
    tuned = clean.model_params
    assert {tuple(k.split("/")) for k in tuned} - {("vision", "prompts")} == {
        tuple(map(str, k)) for k in ln}
    assert clean.metrics["trainable_parameters"] == 4 * 16 + 4 * 2 * 16 + C * 8
    assert clean.model_setup == {"visual_prompts": 4} and tuned["vision/prompts"].shape == (1, 4, 16)
    for k in ln:
        assert np.abs(tuned["/".join(map(str, k))] - np.asarray(frozen[k][...])).max() > 1e-6, k
    [text_round, tuned_round] = clean.rounds
    assert text_round["stage"] == "text" and tuned_round["resumed_epochs"] == 0
    assert not np.allclose(clean.head.weights, 0) and clean.head.scale == 1.0
    np.testing.assert_array_equal(clean.head.probs(clean.head_features).argmax(1), clean.predictions)
    # what `adapt predict` does: install the artifact's parameters in a fresh model, embed, apply the head
    m = _model()
    install_tuned(m, clean.model_setup, clean.model_params)
    pixels = pool_pixels(_Pool(setup[0]), np.arange(N), m.preprocess)
    np.testing.assert_array_equal(clean.head.probs(np.asarray(m.encode_images(jnp.asarray(pixels)))).argmax(1),
                                  clean.predictions)


def test_a_killed_run_resumes_to_the_identical_output(setup, clean, tmp_path, monkeypatch):
    """The process 'dies' right after the stage-2 checkpoint of epoch 1 (an exception: the files on
    disk are what a kill leaves); the rerun recomputes stage 1 and resumes stage 2 from epoch 2."""
    save = tuning.Checkpoints.save

    class Killed(Exception):
        pass

    def dying_save(self, step, *a):
        save(self, step, *a)
        if step == 1:
            raise Killed

    monkeypatch.setattr(tuning.Checkpoints, "save", dying_save)
    with pytest.raises(Killed):
        _run(setup, 1, tmp_path)
    monkeypatch.setattr(tuning.Checkpoints, "save", save)
    resumed = _run(setup, 1, tmp_path)
    assert resumed.rounds[1]["resumed_epochs"] == 1
    assert set(resumed.model_params) == set(clean.model_params)
    for k, v in clean.model_params.items():
        np.testing.assert_array_equal(resumed.model_params[k], v, err_msg=k)
    np.testing.assert_array_equal(resumed.head.weights, clean.head.weights)
    np.testing.assert_array_equal(resumed.predictions, clean.predictions)


def test_one_and_eight_devices_agree(setup, clean, tmp_path):
    eight = _run(setup, 8, tmp_path)
    for k, v in clean.model_params.items():
        np.testing.assert_allclose(eight.model_params[k], v, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(eight.head.weights, clean.head.weights, atol=1e-5)
    np.testing.assert_array_equal(eight.rounds[0]["pseudo_labels"], clean.rounds[0]["pseudo_labels"])
