"""S3A CVPR: vote / realign against the NumPy restatement, the spec's property checks, the metrics
of the realistic setting and the job end to end on a tiny CLIP."""
import csv
import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from adapt import cli
from adapt.core import mesh as mesh_lib
from adapt.core.method import MethodInputs
from adapt.realistic import metrics as rm
from adapt.realistic import vote_realign as vr
from adapt.realistic.phrases import PhraseEntries
from adapt.vocab.vocabulary import Entry, Vocabulary, match_class_names
from methods import s3a
from tests import reference_s3a as ref

N, D, V, K = 203, 6, 40, 5


def _int_data(seed=0, n=N, v=V):
    """Small-integer rows: every dot product is exact in float32, ties happen (and must agree)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=(n, D)).astype(np.float32)
    t = rng.integers(-3, 4, size=(v, D)).astype(np.float32)
    return x, t, rng.integers(0, K, size=n).astype(np.int32)


def _shard(mesh, *arrays):
    return [mesh_lib.shard_rows(a, mesh) for a in arrays]


@pytest.mark.parametrize("devices", [1, 8])
def test_vote_realign_reproduces_the_numpy_restatement_exactly(devices):
    x, t, part0 = _int_data()
    mesh = mesh_lib.make_mesh(devices)
    (xs, mask), (ps, _) = _shard(mesh, x, part0)
    got = vr.vote_realign(ps, xs, mask, jnp.asarray(t), k=K, rounds=3, mesh=mesh, block=8)
    want_part, want_words, want_s = ref.vote_realign(part0, x, t, K, rounds=3)
    np.testing.assert_array_equal(np.asarray(got.partition)[:N], want_part)
    np.testing.assert_array_equal(got.words, want_words)
    np.testing.assert_array_equal(np.asarray(got.structural)[:N], want_s)
    assert len(set(got.words.tolist())) == K  # K distinct words


def test_votes_and_vote_matrix_equal_a_brute_force_count():
    x, t, part = _int_data(1)
    mesh = mesh_lib.make_mesh(8)
    (xs, mask), (ps, _) = _shard(mesh, x, part)
    votes, score = vr.vocabulary_argmax(xs, jnp.asarray(t), mesh=mesh, block=16)
    np.testing.assert_array_equal(np.asarray(votes)[:N], ref.votes(x, t))
    np.testing.assert_array_equal(np.asarray(score)[:N], (x @ t.T).max(1))
    m = vr.vote_matrix(vr.vote_counts(ps, votes, mask, k=K, v=V))
    np.testing.assert_array_equal(m, ref.vote_matrix(part, ref.votes(x, t), K, V))
    np.testing.assert_allclose(m.sum(1), 1.0)


def test_hungarian_gives_distinct_words_and_shrinking_keeps_the_optimum():
    rng = np.random.default_rng(0)
    m = np.zeros((6, 500))
    m[:, rng.choice(500, 9, replace=False)] = rng.random((6, 9))
    full, small = vr.assign_words(m), vr.assign_words(m, shrink=True)
    assert len(set(full)) == 6 and len(set(small)) == 6
    np.testing.assert_array_equal(full, ref.hungarian(m))
    assert m[np.arange(6), full].sum() == pytest.approx(m[np.arange(6), small].sum())
    with pytest.raises(ValueError, match="need K <= |V|"):
        vr.assign_words(np.ones((3, 2)))


def test_realign_is_the_argmax_over_the_assigned_words_only_and_a_fixed_point_stays():
    rng = np.random.default_rng(2)
    t = np.eye(V, D * 2, dtype=np.float32)[:, :D] + 0.01 * rng.normal(size=(V, D)).astype(np.float32)
    words = np.array([0, 1, 2, 3, 4])
    x = t[rng.integers(0, 5, N)] + 0.05 * rng.normal(size=(N, D)).astype(np.float32)
    mesh = mesh_lib.make_mesh(8)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    part = vr.realign(xs, mask, jnp.asarray(t[words]))
    np.testing.assert_array_equal(np.asarray(part)[:N], np.argmax(x @ t[words].T, 1))
    # each cluster is the argmax region of a distinct word: one round changes nothing
    out = vr.vote_realign(part, xs, mask, jnp.asarray(t), k=5, rounds=1, mesh=mesh)
    np.testing.assert_array_equal(np.asarray(out.partition), np.asarray(part))
    assert out.history[0]["moved"] == 0 and sorted(out.words) == [0, 1, 2, 3, 4]


def test_permuting_the_pool_permutes_the_outputs():
    x, t, part = _int_data(3)
    x = x + np.random.default_rng(3).normal(scale=1e-2, size=x.shape).astype(np.float32)  # no ties
    perm = np.random.default_rng(4).permutation(N)
    mesh = mesh_lib.make_mesh(8)
    outs = []
    for p in (np.arange(N), perm):
        (xs, mask), (ps, _) = _shard(mesh, x[p], part[p])
        outs.append(vr.vote_realign(ps, xs, mask, jnp.asarray(t), k=K, mesh=mesh, block=8))
    np.testing.assert_array_equal(outs[0].words, outs[1].words)
    np.testing.assert_array_equal(np.asarray(outs[0].structural)[:N][perm], np.asarray(outs[1].structural)[:N])


def test_phrase_realign_matches_the_restatement_and_hand_counted_scores():
    x, t, part = _int_data(5)
    rng = np.random.default_rng(5)
    owner = np.repeat(np.arange(K), 4)  # 4 entries per cluster: 2 candidate words x 2 phrases
    word = np.concatenate([[2 * c, 2 * c, 2 * c + 1, 2 * c + 1] for c in range(K)])
    weight = np.tile([0.75, 0.25, 0.5, 0.5], K)
    emb = rng.integers(-3, 4, size=(len(owner), D)).astype(np.float32)
    entries = PhraseEntries(emb, owner, word, weight, [""] * len(owner), {})
    mesh = mesh_lib.make_mesh(8)
    (xs, mask), (ps, _) = _shard(mesh, x, part)
    votes, _ = vr.vocabulary_argmax(xs, jnp.asarray(t), mesh=mesh, block=8)
    al, s = vr.phrase_realign(xs, mask, ps, jnp.asarray(t), entries, k=K, votes=votes, mesh=mesh,
                              block=8)
    want_part, want_words, want_s = ref.phrase_realign(part, x, t, K, emb, owner, word, weight)
    np.testing.assert_allclose(s, want_s, rtol=1e-12)
    np.testing.assert_array_equal(al.words, want_words)
    np.testing.assert_array_equal(np.asarray(al.partition)[:N], want_part)
    # hand check on cluster 0: its two words get weight x hits / |cluster 0|
    assert np.count_nonzero(s[0]) <= 2 and s[0, 0] + s[0, 1] > 0


def test_cvpr_names_the_clusters_the_same_on_one_and_eight_devices():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(30, 16)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    true_words = np.array([3, 7, 11, 20])
    y = rng.integers(0, 4, 240)
    x = t[true_words][y] + 0.1 * rng.normal(size=(240, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    vocab = Vocabulary(tuple(Entry(f"w{i}", definitions=(f"thing {i}; part {i % 3}",)) for i in range(30)), "test")
    fake_text = lambda texts: np.stack([t[int(s.split(",")[0].split("w")[-1])] for s in texts])  # noqa: E731
    outs = []
    for devices in (8, 1):  # (K estimation: tests/test_kmeans.py and the job test below)
        settings = s3a.Settings(k=4, n_init=2, block=64)
        mesh = mesh_lib.make_mesh(devices)
        xs, mask = mesh_lib.shard_rows(x, mesh)
        outs.append(s3a.cvpr(xs, mask, jnp.asarray(t), vocab, settings, mesh=mesh,
                             key=jax.random.key(0), embed_texts=fake_text, log=lambda m: None))
    a, b = outs
    assert a.k == b.k == 4
    np.testing.assert_array_equal(np.asarray(a.structural)[:240], np.asarray(b.structural)[:240])
    np.testing.assert_array_equal(np.asarray(a.structural)[:240], true_words[y])
    assert a.info["prompt_step"] == "glosses" and a.info["phrase_entries"] > 0
    # the self-learning hook: structural labels of (here: the same) features from the offline partition
    again = s3a.recompute_structural(b, xs, mask, jnp.asarray(t), mesh=mesh)
    np.testing.assert_array_equal(np.asarray(again)[:240], true_words[y])


def test_closed_setting_method_runs_on_class_names():
    rng = np.random.default_rng(1)
    t = np.eye(4, 8, dtype=np.float32)
    y = rng.integers(0, 4, 64)
    x = t[y] + 0.1 * rng.normal(size=(64, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    mesh = mesh_lib.make_mesh(8)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    from adapt.core.config import load_config

    settings = s3a.settings_from_config(load_config("configs/s3a.py"))
    out = s3a.closed_setting(MethodInputs(xs, mask, jnp.asarray(t), 10.0, {"embedding": xs}, None, mesh,
                                          jax.random.key(0)), settings)
    np.testing.assert_array_equal(out.predictions, y)
    np.testing.assert_allclose(out.probs.sum(1), 1.0, rtol=1e-5)


def test_realistic_metrics():
    names = ["T-shirt/top", "Sneaker", "Ankle boot"]
    vocab = Vocabulary((Entry("jersey", synonyms=("T-shirt",)), Entry("top"), Entry("gym shoe", synonyms=("sneaker",)),
                        Entry("boot"), Entry("cat")), "test")
    matches = match_class_names(vocab, names)
    assert [m["entries"] for m in matches] == [[0, 1], [2], []]
    labels = np.array([0, 0, 1, 1, 2, 2, -1])
    pred = np.array([1, 4, 2, 2, 3, 3, 0])
    emb = {"jersey": [1, 0, 0], "top": [1, 0, 0], "gym shoe": [0, 1, 0], "boot": [0, 0.6, 0.8], "cat": [0.6, 0.8, 0],
           "T-shirt/top": [1, 0, 0], "Sneaker": [0, 1, 0], "Ankle boot": [0, 0, 1]}
    out = rm.realistic_metrics(pred, labels, vocab_names=vocab.names, class_names=names, matches=matches,
                               embed=lambda ts: np.asarray([emb[s] for s in ts], float))
    assert out["accuracy"] == 0.75 and out["n_in_vocabulary_images"] == 4
    assert out["accuracy_all_images"] == 0.5
    assert out["cluster_accuracy"] == pytest.approx(5 / 6)  # top->0, gym shoe->1, boot->2; cat wrong
    assert out["semantic_similarity"] == pytest.approx((1 + 0.6 + 1 + 1 + 0.8 + 0.8) / 6)
    assert out["semantic_accuracy"] == pytest.approx(5 / 6)  # "cat" is nearer Sneaker than T-shirt


def _write_pool(root, n_per_class=8):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            a = rng.integers(0, 50, size=(32, 32, 3), dtype=np.uint8)
            a[..., c] += 200
            Image.fromarray(a).save(root / name / f"{i}.png")


def _best_match_accuracy(pred, labels) -> float:
    """Cluster accuracy by brute force over every map of the predicted words onto the classes."""
    words, classes = sorted(set(pred)), sorted(set(labels))
    best = 0
    for image in itertools.permutations(classes + [None] * len(words), len(words)):
        mapping = dict(zip(words, image))
        best = max(best, sum(mapping[p] == y for p, y in zip(pred, labels)))
    return best / len(labels)


def _check_results_against_the_written_predictions(run, m):
    """metrics.json's scores of CVPR and the cosine zero-shot, recomputed from cvpr.npz and
    predictions.csv: each row's class is its folder; the vocabulary's first words are the classes."""
    vocab = ["red", "green", "blue", "car", "house"]
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    truth = [Path(r["path"]).parent.name for r in rows]
    z = np.load(run / "cvpr.npz")
    assert [vocab[v] for v in z["votes"]] == [r["zero_shot_word"] for r in rows]
    for key, pred in (("s3a_cvpr", z["structural"]), ("zero_shot_cosine", z["votes"])):
        words = [vocab[v] for v in pred]
        r = m["results"][key]
        assert r["accuracy"] == pytest.approx(np.mean([w == t for w, t in zip(words, truth)]))
        assert r["cluster_accuracy"] == pytest.approx(_best_match_accuracy(words, truth))
        assert r["cluster_accuracy"] >= r["accuracy"] - 1e-12  # naming right is one of the maps
        assert r["semantic_accuracy"] >= r["accuracy"] - 1e-12  # a right word is nearest its class
        assert -1 <= r["semantic_similarity"] <= 1 + 1e-6
        assert r["n_distinct_predictions"] == len(set(words))
    assert m["kmeans_cluster_accuracy"] == pytest.approx(
        _best_match_accuracy(list(z["kmeans_partition"]), truth))


def _check_classifier_reproduces_predictions(run, words, n_classes, tuned=False):
    from adapt.output.artifact import load

    clf = load(run / "classifier")
    assert len(clf.class_names) == n_classes and bool(clf.params) == tuned
    rows = (run / "predictions.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] for row in rows] == words
    pred, _ = clf.predict([row.split(",")[0] for row in rows])
    assert [clf.class_names[i] for i in pred] == words


def test_s3a_job_end_to_end_on_a_tiny_clip(tmp_path):
    from tests.clip_fixtures import write_tiny_clip

    clip = write_tiny_clip(tmp_path / "clip")
    _write_pool(tmp_path / "pool")
    vocab = tmp_path / "vocab.tsv"
    vocab.write_text("name\tsynset\tdefinition\nred\tn1\ta colour like blood\ngreen\t\tthe colour of grass\n"
                     "blue\t\tthe colour of the sky\ncar\nhouse\ttree\n".replace("house\ttree", "house"))
    argv = ["run", "configs/s3a.py", "--workdir", str(tmp_path / "run"), "--quiet",
            "--set", f"pool.path={tmp_path / 'pool'}", "--set", f"model.path={clip}",
            "--set", f"embed.cache_dir={tmp_path / 'cache'}", "--set", f"vocabulary.file={vocab}",
            "--set", "method_args.k=3", "--set", "method_args.n_init=2", "--set", "prompts.templates=['a photo of a {}.']"]
    tuning = ["--set", "self_learning.batch_size=8", "--set", "self_learning.min_steps_per_epoch=0"]
    # a destructive learning rate: the student is bound to lower the partition's silhouette
    assert cli.main(argv + tuning + ["--set", "self_learning.epochs=3", "--set", "self_learning.warmup_epochs=1",
                                     "--set", "self_learning.lr=3.0"]) == 0
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert m["k"] == 3 and m["k_given"] and m["vocabulary_size"] == 5
    assert m["class_name_entries"]["red"]["entries"] == ["red"]
    assert len((run / "predictions.csv").read_text().splitlines()) == 25
    _check_results_against_the_written_predictions(run, m)
    cands = json.loads((run / "candidates.json").read_text())["clusters"]
    assert len(cands) == 3
    z = np.load(run / "cvpr.npz")
    assert z["structural"].shape == (24,) and len(set(z["words"].tolist())) == 3
    vocab_names = ["red", "green", "blue", "car", "house"]
    # self-learning: student and teacher predictions are scored like CVPR's; the artifact is the
    # tuned student (its visual prompts) over the whole vocabulary and reproduces the predictions
    assert {"s3a_self_learning", "s3a_self_learning_teacher"} <= set(m["results"])
    assert len(m["self_learning"]["history"]) == 3 and m["self_learning"]["scale"] == 100.0
    stages = m["cvpr"]["stages"]  # issue 28: label-free checks per stage, each against the previous
    assert [r["stage"].split(" ")[0] for r in stages] == ["k-means", "CVR", "CVPR", "self-learning"]
    assert all(set(r["vs_previous"].values()) <= {"improved", "hurt", "same"} for r in stages[1:])
    assert len(stages[-1]["confident_share_per_epoch"]) == 3
    assert "Stages, label-free" in (run / "report.md").read_text()
    # keep=auto (default): the student lowered the partition's silhouette, so CVPR's result is the
    # output: a head over the K clusters, named by their words, that reproduces CVPR's words
    assert stages[-1]["vs_previous"]["silhouette"] == "hurt" and m["cvpr"]["output"].startswith("CVPR")
    assert "kept CVPR's result" in (run / "report.md").read_text()
    _check_classifier_reproduces_predictions(run, [vocab_names[w] for w in z["structural"]], 3)
    # keep=student (the paper): the artifact is the tuned student (its visual prompts) over the whole
    # vocabulary and reproduces the student's predictions
    assert cli.main(argv + tuning + ["--set", "self_learning.epochs=1", "--set", "self_learning.keep=student"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["cvpr"]["output"] == "self-learning student"
    student = [row.split(",")[1] for row in (run / "predictions.csv").read_text().splitlines()[1:]]
    assert m["results"]["s3a_self_learning"]["n_distinct_predictions"] == len(set(student))
    _check_classifier_reproduces_predictions(run, student, 5, tuned=True)
    assert cli.main(argv[:-6] + ["--set", "self_learning.epochs=0",
                                 "--set", "method_args.k=estimate", "--set", "method_args.k_max=3",
                                 "--set", "method_args.search_n_init=1",
                                 "--set", "method_args.phrases=none", "--set", "method_args.n_init=2",
                                 "--set", "prompts.templates=['a photo of a {}.']"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert not m["k_given"] and 2 <= m["k"] <= 3 and m["cvpr"]["prompt_step"].startswith("none")
    assert m["cvpr"]["k_search"]["search"] == "grid" and sorted(m["cvpr"]["k_search"]["scores"]) == ["2", "3"]


# --- issue 28: K search, realign rule, stage checks ------------------------------------------------

def test_grid_search_finds_the_peak_the_binary_search_walks_past():
    from adapt.realistic import cluster_count as cc

    # a curve with its peak at K = 10 and a local bump at high K (flat-ish, like the offline model's)
    def score(k):
        return 0.12 - 0.01 * abs(k - 10) if k <= 30 else 0.05 + 0.0005 * (k - 30)
    assert cc.search_k(score, 2, 100, rounds=3)[0] != 10  # the official binary search misses it
    k, seen = cc.search_grid(score, 2, 100)
    assert k == 10 and set(range(2, 31)) <= set(seen) and max(seen) == 100


def test_estimate_k_marks_structure_reliable_and_noise_unreliable():
    from adapt.realistic import cluster_count as cc

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 10
    blobs = (centres[rng.integers(0, 4, 160)] + rng.normal(size=(160, 8))).astype(np.float32)
    noise = rng.normal(size=(160, 8)).astype(np.float32)
    kw = dict(k_min=3, k_max=4, n_init=1, mesh=mesh_lib.make_mesh(1))  # two shapes: compiled once
    k, info = cc.estimate_k(blobs, **kw)
    assert k == 4 and info["reliable"]
    assert not cc.estimate_k(noise, **kw)[1]["reliable"]  # silhouette of noise stays far below 0.25


def _crossing_words():
    """Two tight image clusters left and right; the two words point up and down, so the paper's
    realign (nearest word) cuts both clusters in half."""
    rng = np.random.default_rng(1)
    spread = np.asarray([0.05, 0.3])
    x = np.concatenate([[-1.0, 0.0] + spread * rng.normal(size=(20, 2)),
                        [1.0, 0.0] + spread * rng.normal(size=(20, 2))]).astype(np.float32)
    t = np.asarray([[0.0, 1.0], [0.0, -1.0]], np.float32)
    return x, t, np.repeat([0, 1], 20).astype(np.int32)


def test_keep_names_clusters_without_moving_them():
    x, t, part = _crossing_words()
    mesh = mesh_lib.make_mesh(1)
    (xs, mask), (ps, _) = _shard(mesh, x, part)
    kept = vr.vote_realign(ps, xs, mask, jnp.asarray(t), k=2, rounds=3, move=False)
    np.testing.assert_array_equal(np.asarray(kept.partition)[:40], part)
    counts = np.zeros((2, 2))
    np.add.at(counts, (part, (x @ t.T).argmax(1)), 1)
    np.testing.assert_array_equal(kept.words, ref.hungarian(counts / counts.sum(1, keepdims=True)))
    moved = vr.vote_realign(ps, xs, mask, jnp.asarray(t), k=2, rounds=1)
    assert moved.history[0]["moved"] > 0  # the paper's rule moves images here


@pytest.mark.parametrize("rule", ["auto", "words"])
def test_auto_realign_rejects_a_step_that_lowers_the_silhouette(rule):
    from sklearn.metrics import silhouette_score

    x, t, part = _crossing_words()
    mesh = mesh_lib.make_mesh(1)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    st = s3a.Settings(k=2, n_init=2, phrases="none", realign=rule)
    out = s3a.cvpr(xs, mask, jnp.asarray(t), None, st, mesh=mesh, key=jax.random.key(0), log=lambda m: None)
    final = np.asarray(out.partition)[:40]
    km = np.asarray(out.kmeans_partition)[:40]
    if rule == "auto":  # the realigned partition's silhouette is lower: rejected, only renamed
        np.testing.assert_array_equal(final, km)
        check = out.info["realign_checks"][0]
        assert not check["accepted"] and check["silhouette_after"] < check["silhouette_before"]
        assert np.isclose(check["silhouette_before"], silhouette_score(x, km), atol=1e-4)
        assert not out.move
    else:
        assert (final != km).any() and out.move


def test_stage_checks_measure_silhouette_and_vote_agreement_against_sklearn():
    from sklearn.metrics import silhouette_score

    from adapt.realistic.stage_checks import stage_checks

    x, _, part = _crossing_words()
    votes = np.where(x[:, 0] < 0, 7, 9)
    halves = np.where(x[:, 1] > 0, 7, 9)  # a partition across the structure
    rows = stage_checks([("good", votes), ("bad", halves), ("bad again", halves)], x, votes,
                        mesh=mesh_lib.make_mesh(1))
    assert np.isclose(rows[0]["silhouette"], silhouette_score(x, votes), atol=1e-4)
    assert np.isclose(rows[1]["silhouette"], silhouette_score(x, halves), atol=1e-4)
    assert rows[0]["vote_agreement"] == 1.0 and rows[1]["vote_agreement"] == np.mean(halves == votes)
    assert rows[1]["vs_previous"] == {"silhouette": "hurt", "vote_agreement": "hurt"}
    assert rows[2]["vs_previous"] == {"silhouette": "same", "vote_agreement": "same"}
