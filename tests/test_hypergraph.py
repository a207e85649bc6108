"""TMV-HLP-style propagation (methods/hypergraph.py, adapt/graph/hyper.py, adapt/graph/cca.py)
against the dense NumPy restatement of the spec, plus the spec's property checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from adapt.core import mesh as mesh_lib
from adapt.core.config import load_config
from adapt.core.method import MethodInputs
from adapt.features.text import ClassTexts
from adapt.graph import cca as graph_cca
from adapt.graph import hyper as graph_hyper
from adapt.graph import stopping
from methods import hypergraph
from tests import reference_graph as graph_ref
from tests import reference_hypergraph as ref

N, C, K = 120, 4, 4


def _data(seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, N)
    c1, c2 = rng.normal(size=(C, 10)), rng.normal(size=(C, 8))
    x = c1[labels] + 1.5 * rng.normal(size=(N, 10))
    extra = np.abs(c2[labels] + 1.5 * rng.normal(size=(N, 8)))
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(x), unit(c1), extra.astype(np.float32), np.abs(c2).astype(np.float32), labels


def _run(x, t, extra, extra_protos, n_devices=8, **overrides):
    config = load_config("configs/hypergraph.py")
    with config.unlocked():
        config.method_args.update(dict(k=K, refine_top=10, cca_floor=0.0, block=32, views=["all"]) | overrides)
    mesh = mesh_lib.make_mesh(n_devices)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    es, _ = mesh_lib.shard_rows(extra, mesh)
    texts = ClassTexts(t, extra_protos, "extra", [[]] * C, [[]] * C)
    inputs = MethodInputs(xs, mask, mesh_lib.replicate(t, mesh), 10.0, {"embedding": xs, "extra": es}, texts,
                          mesh, jax.random.key(0))
    return hypergraph.make(config).run(inputs)


def test_method_matches_the_dense_restatement_on_1_and_8_devices_and_under_permutation():
    x, t, extra, extra_protos, _ = _data()
    eight = _run(x, t, extra, extra_protos, 8)
    xc, m = graph_ref.centred_rectified(x, t, 10.0)
    views = [xc, extra, xc @ t.T]
    kept = eight.metrics["propagations_kept"]  # the config's defaults: rectified prototypes, at most
    f, _ = ref.tmv_hlp(views, [m, extra_protos, t @ t.T], k=K, alpha=0.35, refine_top=10, cca_floor=0.0,
                       propagations=kept)  # 20 propagations, the step the "labels" stopping rule keeps
    np.testing.assert_array_equal(eight.predictions, f.argmax(1))
    assert eight.metrics["propagations"] == 20 and eight.metrics["stop"] == "labels" and 2 <= kept <= 20
    assert eight.metrics["views"] == ["embedding", "extra", "text"] and eight.metrics["hyperedge_pairs"] == 6
    one = _run(x, t, extra, extra_protos, 1)
    np.testing.assert_array_equal(one.predictions, eight.predictions)
    np.testing.assert_allclose(one.probs, eight.probs, rtol=1e-5, atol=1e-7)
    perm = np.random.default_rng(2).permutation(N)
    permuted = _run(x[perm], t, extra[perm], extra_protos, 8)
    np.testing.assert_array_equal(permuted.predictions, eight.predictions[perm])
    np.testing.assert_allclose(permuted.probs, eight.probs[perm], rtol=1e-4, atol=1e-6)
    assert eight.setting == "transductive" and np.allclose(eight.probs.sum(1), 1, atol=1e-5)


def _function_inputs(n_devices=8):
    x, t, extra, extra_protos, labels = _data()
    mesh = mesh_lib.make_mesh(n_devices)
    views = [x, extra]
    shards = [mesh_lib.shard_rows(v, mesh)[0] for v in views]
    return views, shards, mesh_lib.shard_rows(x, mesh)[1], mesh, [t, None], labels


def test_scores_equal_the_restatement_and_fusion_without_hyperedges_is_plain_propagation():
    views, shards, mask, mesh, protos, _ = _function_inputs()
    kw = dict(k=K, alpha=0.35, refine_top=10, cca_floor=0.0)
    want, pieces = ref.tmv_hlp(views, protos, **kw)
    for official in (False, True):
        _, f, info = hypergraph.tmv_hlp(shards, [jnp.asarray(protos[0]), None], mask, mesh, tol=1e-9, block=32,
                                        official_delta=official, **kw)
        np.testing.assert_allclose(np.asarray(f)[:N], want, atol=1e-6)
    assert info["residual_max_abs"] < 1e-6
    _, f0, _ = hypergraph.tmv_hlp(shards, [jnp.asarray(protos[0]), None], mask, mesh, tol=1e-9, block=32,
                                  hyper_share=0.0, **kw)
    cw = pieces["cW"]
    d = cw.sum(1)
    s = cw / np.sqrt(d[:, None] * d[None, :])
    y = np.zeros((N + C, C))
    y[N:] = 2 * np.eye(C) - 1
    step = 0.65 * np.linalg.inv(np.eye(N + C) - 0.35 * s)
    np.testing.assert_allclose(np.asarray(f0)[:N], (step @ y)[:N], atol=1e-6)
    # P propagations: the official loop F <- (1 - alpha)(I - alpha S)^-1 F, last iterate kept
    _, f3, _ = hypergraph.tmv_hlp(shards, [jnp.asarray(protos[0]), None], mask, mesh, tol=1e-9, block=32,
                                  hyper_share=0.0, propagations=3, **kw)
    np.testing.assert_allclose(np.asarray(f3)[:N], (step @ step @ step @ y)[:N], atol=1e-6)


def test_zscore_topk_hypergraph_operator_and_cca_residual():
    views, shards, mask, mesh, protos, _ = _function_inputs()
    means, projs, lam, cov_all, cov_diag, w = graph_cca.multiview_cca(shards, mask, floor=0.0)
    residual = cov_all @ w - (cov_diag @ w) * lam[None, :]
    assert np.abs(residual).max() <= 1e-6 * np.abs(cov_all).max()
    nodes, node_mask, start, _ = hypergraph.embed_nodes(shards, [jnp.asarray(protos[0]), None], mask, mesh,
                                                        refine_top=10, cca_floor=0.0)
    keep = np.asarray(node_mask)
    xa, xb = np.asarray(nodes[0], np.float64)[keep], np.asarray(nodes[1], np.float64)[keep]
    d = ((xa[:, None] - xb[None]) ** 2).sum(-1)
    median = float(np.median(d))
    z_want = scipy.stats.zscore(scipy.stats.zscore(np.exp(-d / median), axis=1, ddof=1), axis=0, ddof=1)
    rows = start + jnp.arange(C, dtype=jnp.int32)
    val, ids, pval, pids = graph_hyper.double_zscore_topk(nodes[0], nodes[1], node_mask, median, K, rows,
                                                          block=32, mesh=mesh)
    order = np.argsort(-z_want, axis=1, kind="stable")
    np.testing.assert_array_equal(np.asarray(ids)[:N], order[:N, 1:K + 1])  # rank 1 skipped, k kept
    np.testing.assert_array_equal(np.asarray(pids), order[N:, 1:9 * K + 1])  # prototypes keep 9k
    np.testing.assert_allclose(np.asarray(val)[:N], np.take_along_axis(z_want[:N], order[:N, 1:K + 1], 1), atol=1e-4)
    lists = graph_hyper.kept_lists(val, ids, pval, pids, node_mask, start, C)
    delta, d_v = graph_hyper.hyperedge_stats(lists)
    n_nodes = nodes.shape[1]
    inv = jnp.where(d_v > 0, jax.lax.rsqrt(jnp.where(d_v > 0, d_v, 1.0)), 1.0)
    s_hyp = np.asarray(graph_hyper.apply_hypergraph(graph_hyper.stack([graph_hyper.to_edges(lists)]), delta[None],
                                                    jnp.eye(n_nodes), inv))[np.ix_(keep, keep)]
    g = np.zeros((N + C, N + C))
    g[np.arange(N)[:, None], order[:N, 1:K + 1]] = z_want[np.arange(N)[:, None], order[:N, 1:K + 1]]
    g[np.arange(N, N + C)[:, None], order[N:, 1:9 * K + 1]] = z_want[np.arange(N, N + C)[:, None], order[N:, 1:9 * K + 1]]
    h = (np.maximum(g, 0) + np.maximum(g, 0).T) / 2
    count = (h > 0).sum(1)
    dl = np.where(count > 0, h.sum(1) / np.maximum(count, 1), 0)
    dv = (dl[:, None] * h ** 2).sum(0)
    dm = 1 / np.sqrt(dv)
    want = dm[:, None] * (h @ (dl[:, None] * h)) * dm[None, :]
    np.testing.assert_allclose(s_hyp, want, atol=1e-4)
    np.testing.assert_allclose(s_hyp, s_hyp.T, atol=1e-5)
    np.testing.assert_allclose(np.diag(s_hyp)[dv > 0], 1.0, atol=1e-5)


def test_rectified_prototypes_replace_the_embedding_view_prototypes():
    """prototypes=rectified: the embedding view's prototypes are m_c = normalize(sum_i
    softmax_c(s x_i . t_c) x_i) (s the model's logit scale, 10 here); the rest is unchanged."""
    x, t, extra, extra_protos, _ = _data()
    out = _run(x, t, extra, extra_protos, 8, prototypes="rectified", views=["embedding", "extra"], stop="fixed")
    xc, m = graph_ref.centred_rectified(x, t, 10.0)
    f, _ = ref.tmv_hlp([xc, extra], [m, extra_protos], k=K, alpha=0.35, refine_top=10, cca_floor=0.0,
                       propagations=20)
    np.testing.assert_array_equal(out.predictions, f.argmax(1))
    assert out.metrics["prototypes"] == "rectified"
    text = _run(x, t, extra, extra_protos, 8, prototypes="text", views=["embedding", "extra"], stop="fixed")
    # text prototypes pair with the uncentred embedding view (issue 19 item 5)
    f, _ = ref.tmv_hlp([x, extra], [t, extra_protos], k=K, alpha=0.35, refine_top=10, cca_floor=0.0,
                       propagations=20)
    np.testing.assert_array_equal(text.predictions, f.argmax(1))
    assert text.metrics["centered"] is False and out.metrics["centered"] is True
    with pytest.raises(ValueError, match="prototypes"):
        _run(x, t, extra, extra_protos, 1, prototypes="means")


def test_prototype_refinement_never_averages_more_than_one_class_share():
    """Issue 19: refine_top 500 on a pool of N <= 500 made every prototype the pool mean (noise
    predictions that differed between devices). T = min(refine_top, N // C) (the restatement follows
    the same rule); the behaviour at N = 200 (1 vs 8 devices, accuracy) is checked by the sweep below."""
    assert hypergraph.refine_count(500, 6180, 10) == 500  # the official AwA setting is unchanged
    assert hypergraph.refine_count(500, 200, 3) == 66 and hypergraph.refine_count(500, 2, 4) == 1


# ------------------------------------------------------------------ issue 19: every pool size
SWEEP_SIZES = (2, 5, 8, 20, 60, 200)
SWEEP_ROWS = 200  # every sweep pool padded (masked rows) to one shape: each mesh compiles once
SWEEP_DIM = 8  # with SWEEP_ROWS, the shapes of tests/test_small_pools.py: its hypergraph runs reuse the compiles


def _sweep_pool(n, seed=3):
    """(x (n, 8) unit rows of classes 0-2 (class 3 is empty) whose last n // 3 rows repeat the first
    ones, class embeddings t (4, 8), labels (n,))."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, SWEEP_DIM))
    distinct = n - n // 3
    labels = rng.integers(0, 3, distinct)
    x = centres[labels] + 0.6 * rng.normal(size=(distinct, SWEEP_DIM))
    x, labels = np.concatenate([x, x[: n // 3]]), np.concatenate([labels, labels[: n // 3]])
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(x), unit(centres), labels


def _sweep_run(x, t, mesh, **overrides):
    config = load_config("configs/hypergraph.py")
    with config.unlocked():
        config.method_args.update(dict(cca_floor=0.0) | overrides)
    rows = np.zeros((SWEEP_ROWS, x.shape[1]), np.float32)
    rows[: len(x)] = x
    xs, _ = mesh_lib.shard_rows(rows, mesh)
    mask = jax.device_put(np.arange(SWEEP_ROWS) < len(x), mesh_lib.pool_sharding(mesh))
    texts = ClassTexts(t, None, None, [[]] * 4, [[]] * 4)
    inputs = MethodInputs(xs, mask, mesh_lib.replicate(t, mesh), 10.0, {"embedding": xs}, texts, mesh,
                          jax.random.key(0))
    return hypergraph.make(config).run(inputs)


@pytest.fixture(scope="module")
def meshes():
    return mesh_lib.make_mesh(1), mesh_lib.make_mesh(8)


@pytest.mark.parametrize("n", SWEEP_SIZES)
def test_every_pool_size_runs_and_agrees_on_1_and_8_devices_and_under_permutation(n, meshes):
    """Issue 19: pools of 2 to 200 images with duplicates and an empty class (2 images make 6 nodes:
    k and 9k capped at the other nodes): every size runs, 1 and 8 devices give the same predictions
    and probabilities to 1e-5, and so does a permuted pool, row for row. Small pools hold exactly
    tied nodes (duplicates; a refined prototype equal to its one pool row, or two prototypes refined
    on the same rows): they must tie bitwise, and ties must be kept or dropped together rather than
    broken by node id (README 1e, eighth session)."""
    x, t, _ = _sweep_pool(n)
    eight = _sweep_run(x, t, meshes[1])
    assert eight.probs.shape == (n, 4) and np.all(np.isfinite(eight.probs))
    np.testing.assert_allclose(eight.probs.sum(1), 1.0, atol=1e-5)
    one = _sweep_run(x, t, meshes[0])
    np.testing.assert_array_equal(one.predictions, eight.predictions)
    np.testing.assert_allclose(one.probs, eight.probs, atol=1e-5)
    perm = np.random.default_rng(n).permutation(n)
    permuted = _sweep_run(x[perm], t, meshes[1])
    np.testing.assert_array_equal(permuted.predictions, eight.predictions[perm])
    np.testing.assert_allclose(permuted.probs, eight.probs[perm], atol=1e-5)
    if n == 200:  # the dense restatement (T = N // C refinement; its lists drop ties as ours do)
        xc, m = graph_ref.centred_rectified(x, t, 10.0)
        f, _ = ref.tmv_hlp([xc, xc @ t.T], [m, t @ t.T], k=10, alpha=0.35, refine_top=500, cca_floor=0.0,
                           propagations=eight.metrics["propagations_kept"])
        np.testing.assert_array_equal(eight.predictions, f.argmax(1))


def test_stopping_rules_pick_the_step_their_statistics_say():
    """adapt.graph.stopping.kept_step on hand-made traces (closed form of each rule)."""
    entropy, changed = [1.0, 0.9, 0.8, 0.8000001, 0.7], [0, 400, 100, 4, 0]
    assert stopping.kept_step("entropy", entropy, changed, 1000, 20) == 3  # H_4 >= H_3 - 1e-6
    assert stopping.kept_step("entropy", entropy[:3], changed[:3], 1000, 20) is None
    assert stopping.kept_step("labels", entropy, changed, 1000, 20) == 4  # 4 < 0.5% of 1000
    assert stopping.kept_step("labels", entropy, changed, 100, 20) == 5  # 4 >= 0.5% of 100
    assert stopping.kept_step("fixed", entropy, changed, 1000, 5) == 5
    assert stopping.kept_step("fixed", entropy, changed, 1000, 20) is None
    assert stopping.kept_step("labels", entropy[:1], changed[:1], 1000, 1) == 1
    z = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    assert np.isclose(stopping.mean_entropy(z), 2 * np.log(2) / 3)


def test_a_stopping_rule_keeps_the_scores_of_that_many_fixed_propagations(meshes):
    """The method with stop=labels / entropy returns exactly the fixed-P run at the kept P, and that
    P is the one kept_step reads off the run's own per-step statistics."""
    x, t, _ = _sweep_pool(200)
    for rule in ("labels", "entropy"):
        out = _sweep_run(x, t, meshes[1], stop=rule)
        m = out.metrics
        kept = stopping.kept_step(rule, m["step_entropy"], m["step_changed"], 200, 20)
        assert m["propagations_kept"] == kept and m["propagations_computed"] == len(m["step_entropy"])
        fixed = _sweep_run(x, t, meshes[1], stop="fixed", propagations=kept)
        np.testing.assert_array_equal(out.predictions, fixed.predictions)
        np.testing.assert_allclose(out.probs, fixed.probs, atol=1e-7)
