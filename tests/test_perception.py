"""PerceptionCLIP (adapt/features/perception.py): p(y|x) (marginal and inferred context) against a NumPy
restatement of the paper's formulas, the (class, context) energies against per-prompt scores, and one
engine run on a tiny CLIP checkpoint with PerceptionCLIP and FuDD together."""
from __future__ import annotations

import json

import numpy as np
import pytest

from adapt.features import fudd, perception


def _restated(energy, mode, tau, obj=None):
    n, k, nz = energy.shape
    p_y = np.zeros((n, k))
    for i in range(n):
        score = [obj[i, z] if obj is not None else np.log(np.exp(energy[i, :, z]).sum()) for z in range(nz)]
        pz = np.exp(np.array(score) / tau)
        pz /= pz.sum()
        cond = [np.exp(energy[i, :, z]) / np.exp(energy[i, :, z]).sum() for z in range(nz)]
        p_y[i] = sum(pz[z] * cond[z] for z in range(nz)) if mode == "marginal" else cond[int(pz.argmax())]
    return p_y


@pytest.mark.parametrize("mode,tau,pure", [("marginal", 1.0, False), ("marginal", 0.5, True), ("infer", 1.0, False),
                                           ("infer", 2.0, True)])
def test_probs_equal_the_restatement(mode, tau, pure):
    rng = np.random.default_rng(3)
    energy = rng.normal(scale=3, size=(9, 4, 6))
    obj = rng.normal(scale=3, size=(9, 6)) if pure else None
    got, p_z = perception.perception_probs(energy, mode, tau, obj)
    np.testing.assert_allclose(got, _restated(energy, mode, tau, obj), atol=1e-6)
    np.testing.assert_allclose(p_z.sum(1), 1.0, atol=1e-6)


def test_contexts_and_prompts():
    zs = perception.contexts(["orientation", "quality"])
    assert len(zs) == 9 and zs[0] == "" and "upside-down, blurry" in zs
    assert perception.with_context("a photo of a {}.", "cat", "dark") == "a photo of a cat, dark."
    assert perception.with_context("itap of a {}", "cat", "") == "itap of a cat"
    with pytest.raises(ValueError):
        perception.contexts(["weather"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two classes, four images: few distinct text batch shapes to compile (the suite's time)."""
    from tests.clip_fixtures import write_tiny_clip
    from tests.test_adversarial import write_pool

    root = tmp_path_factory.mktemp("perception")
    return root, write_tiny_clip(root / "clip"), write_pool(root / "pool", 2, ("cat", "dog"))


class _HashModel:
    """Texts -> seeded-hash embeddings (D = 6) and class maps (V = 4): independent of perception.py."""

    def encode_texts(self, texts):
        return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=6) for t in texts])

    def class_map(self, texts):
        return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).dirichlet(np.ones(4)) for t in texts])


@pytest.mark.parametrize("with_map", [False, True])
def test_context_energy_equals_per_prompt_scores(with_map):
    """E(y, z; x): the template ensemble of each (class, context) prompt, scored as zero_shot scores."""
    model, rng = _HashModel(), np.random.default_rng(0)
    names, templates, zs = ["cat", "dog"], ["a photo of a {}.", "a {} in the wild."], ["", "dark"]
    x, view = rng.normal(size=(5, 6)), rng.dirichlet(np.ones(4), size=5)
    got = perception.context_energy(model, names, templates, zs, view if with_map else None, x, 7.0)
    for y, name in enumerate(names):
        for z, ctx in enumerate(zs):
            prompts = [perception.with_context(t, name, ctx) for t in templates]
            if with_map:
                want = np.log(view @ model.class_map(prompts).mean(0))
            else:
                emb = model.encode_texts(prompts)
                t = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).mean(0)
                want = 7.0 * x @ (t / np.linalg.norm(t))
            np.testing.assert_allclose(got[:, y, z], want, rtol=1e-5, atol=1e-5)


def test_engine_end_to_end_with_both_options(tiny):
    """zero_shot with prompts.context=marginal (its prior is the pool's rows) then FuDD from a pair file."""
    from adapt import cli
    from tests.test_adversarial import run_args

    root, clip, pool = tiny
    pairs = root / "pairs.json"
    pairs.write_text(json.dumps({"format": fudd.FORMAT, "generator": {}, "pairs": [
        {"classes": ["cat", "dog"], "descriptions": {"cat": ["pointed ears"], "dog": ["floppy ears"]}}]}))
    args = run_args(root, clip, pool, root / "run", "--set", "prompts.context=marginal",
                    "--set", "prompts.context_attributes=['orientation']", "--set", "decision.rule=fudd",
                    "--set", "decision.fudd_k=2", "--set", f"decision.fudd_descriptions={pairs}")
    assert cli.main(args) == 0
    m = json.loads((root / "run" / "metrics.json").read_text())
    assert m["context"]["n_contexts"] == 3 and m["context"]["head"] == "cosine"
    assert m["pool_probs"].startswith("prompts.context") and m["decision"]["n_descriptions"] == 2
    assert m["accuracy_before_decision"] is not None
    probs = np.load(root / "run" / "pool_probs.npz")["probs"]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
