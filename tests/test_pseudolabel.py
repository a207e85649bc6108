"""Pseudolabel prompt tuning end to end: prompt wiring on the offline default model, artifacts that
carry tuned parameters, and a killed tuning job that resumes to the identical artifact."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from adapt import cli
from adapt.output.artifact import load
from tests.clip_fixtures import write_tiny_clip
from tests.test_engine import _write_pool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def offline():
    from adapt.models.offline import load_offline_default

    return load_offline_default()


def test_offline_textual_wiring_reproduces_the_template(offline):
    """Context = token embeddings of "a photo of a": the class embeddings equal the model's own
    text embeddings of "a photo of a {name}" (spec: textual prompt wiring, 1e-5), WordNet grounding
    included (names given to both sides)."""
    from adapt.tuning.offline_head import ContextText

    names = ["trouser", "sneaker", "ankle boot"]
    text = ContextText(offline, names, 4)
    got = np.asarray(text.class_weights(text.init_context("a photo of a")))
    want = offline.encode_texts([f"a photo of a {n}" for n in names], names=names)
    assert offline.grounds_names  # the default; "sneaker" grounds one level up (gym shoe -> shoe)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert text.init_context(seed=0).shape == (4, 384)


def test_offline_visual_wiring_reproduces_the_frozen_embedding(offline):
    """Zero affine deltas = the frozen model: pooled cached head pre-activations equal encode_images."""
    from adapt.tuning import offline_head as ot

    px = jnp.asarray(np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32))
    z = offline.image.head_preactivation(px)
    got = ot.pooled_features(ot.bn_stats(offline), ot.head_affine(offline), z)
    np.testing.assert_allclose(np.asarray(got), np.asarray(offline.encode_images(px)), atol=1e-5)


def _run(tmp_path, workdir, *extra):
    argv = ["run", "configs/pseudolabel.py", "--workdir", str(workdir), "--quiet",
            "--set", f"pool.path={tmp_path / 'pool'}", "--set", f"embed.cache_dir={tmp_path / 'cache'}",
            "--set", "embed.batch_size=8", "--set", "method_args.rounds=2", "--set", "method_args.epochs=3",
            "--set", "method_args.warmup_epochs=1", "--set", "method_args.batch_size=4", *extra]
    return cli.main(argv)


def _predictions(run):
    import csv
    return [r["predicted_class"] for r in csv.DictReader(open(run / "predictions.csv"))]


def test_offline_visual_run_artifact_carries_the_tuned_affine_and_lora(tmp_path):
    """No prompt given: the offline model resolves "auto" to visual prompts; the step floor (2 steps
    an epoch, 6 a round, where 3 epochs of one batch give 3) runs and is recorded per round."""
    _write_pool(tmp_path / "pool", n_per_class=4)
    assert _run(tmp_path, tmp_path / "run", "--set", "method_args.min_steps_per_epoch=2",
                "--set", "method_args.lora_rank=4", "--set", "method_args.lr=1.0") == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["model_family"] == "offline" and m["prompt"] == "visual" and m["settings"]["prompt"] == "visual"
    assert m["schedule"]["rule"] == "min_steps_per_epoch" and m["schedule"]["steps"] == [6, 6]
    assert [r["schedule"]["passes"] for r in m["per_round"]] == [2, 2]
    assert m["trainable_parameters"] == 2 * 1280 + 4 * (320 + 1280) and len(m["rounds"]) == 2
    tensors = load_file(str(tmp_path / "run" / "classifier" / "classifier.safetensors"))
    assert set(k for k in tensors if k.startswith("params.")) == {
        "params.image/head_bn/scale", "params.image/head_bn/bias", "params.image/conv_head"}
    from adapt.models.offline import load_offline_default
    frozen = np.asarray(load_offline_default().image.conv_head[...])
    assert np.abs(tensors["params.image/conv_head"] - frozen).max() > 1e-4  # the merged LoRA update
    clf = load(tmp_path / "run" / "classifier")
    images = sorted((tmp_path / "pool").rglob("*.png"))
    images = [p for p in images if p.stat().st_size > 0]
    pred, _ = clf.predict(images)
    names = [clf.class_names[i] for i in pred]
    assert names == _predictions(tmp_path / "run")


KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from adapt import cli
    from adapt.tuning import loop as tuning
    save = tuning.Checkpoints.save
    def slow_save(self, step, *a):
        save(self, step, *a)
        print("saved", step, flush=True)
        if step == 2 and "round_01" in str(self.manager.directory):
            import time; time.sleep(60)  # killed here, mid-way through round 2
    tuning.Checkpoints.save = slow_save
    sys.exit(cli.main({argv!r}))
""")


def test_killed_tuning_job_resumes_to_the_identical_artifact(tmp_path):
    """CLIP path, visual + textual prompts (multimodal): kill in round 2, rerun, compare with an
    uninterrupted run: same tensors, same predictions."""
    _write_pool(tmp_path / "pool", n_per_class=4)
    clip = write_tiny_clip(tmp_path / "clip")
    extra = ["--set", f"model.path={clip}", "--set", "method_args.prompt=multimodal",
             "--set", "method_args.n_ctx=2", "--set", "method_args.augment=weak"]
    argv = ["run", "configs/pseudolabel.py", "--workdir", str(tmp_path / "killed"), "--quiet",
            "--set", f"pool.path={tmp_path / 'pool'}", "--set", f"embed.cache_dir={tmp_path / 'cache'}",
            "--set", "embed.batch_size=8", "--set", "method_args.rounds=2", "--set", "method_args.epochs=3",
            "--set", "method_args.warmup_epochs=1", "--set", "method_args.batch_size=4", *extra]
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT.format(root=ROOT, argv=argv))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    seen = []
    try:
        while len(seen) < 5:  # round 1: 3 saves; round 2: 2 saves, then it sleeps
            line = proc.stdout.readline()
            assert line, f"the job ended before it could be killed (saw {seen})"
            if line.startswith("saved"):
                seen.append(line.split()[1])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "killed" / "classifier").exists()
    assert _run(tmp_path, tmp_path / "killed", *extra) == 0
    m = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert [r["resumed_epochs"] for r in m["per_round"]] == [3, 2]
    assert m["model_family"] == "clip" and m["settings"]["min_steps_per_epoch"] == 0
    assert m["schedule"]["raised"] == [False, False]
    assert _run(tmp_path, tmp_path / "clean", *extra) == 0
    a = load_file(str(tmp_path / "killed" / "classifier" / "classifier.safetensors"))
    b = load_file(str(tmp_path / "clean" / "classifier" / "classifier.safetensors"))
    assert set(a) == set(b) and any(k.startswith("params.") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _predictions(tmp_path / "killed") == _predictions(tmp_path / "clean")


def test_fallback_follows_nolas_rule_classes_in_order_first_occurrence_kept():
    """Issue 19 item 2 (spec pseudolabel_prompt_tuning.md step 3 -> nola.md stage 2a): class 0 is
    nobody's argmax; it takes the two images ranked 2nd for it (rows 3 and 0, by P_i0), relabelled 0,
    and being first in class order keeps row 0, which class 1's own top 2 (rows 1, 0) loses. Main
    gave class 0 only row 3 (its fallback skipped rows an argmax class had chosen). Pool order does
    not matter, and NoLA's confident subset is the same selection."""
    from adapt.tuning import labeller, pseudolabels

    q = np.array([[0.4, 0.6, 0.0], [0.3, 0.7, 0.0], [0.1, 0.0, 0.9], [0.45, 0.55, 0.0]])
    sel = pseudolabels.per_class_topk(q, 2)
    assert sel.indices.tolist() == [3, 0, 1, 2] and sel.labels.tolist() == [0, 0, 1, 2]
    assert sel.fallback == {0: 2} and sel.counts.tolist() == [2, 1, 1]
    perm = np.array([2, 0, 3, 1])
    again = pseudolabels.per_class_topk(q[perm], 2)
    assert sorted(zip(perm[again.indices].tolist(), again.labels.tolist())) == sorted(
        zip(sel.indices.tolist(), sel.labels.tolist()))
    nola = labeller.confident_subset(q, 2)
    assert nola.indices.tolist() == sel.indices.tolist() and nola.labels.tolist() == sel.labels.tolist()
