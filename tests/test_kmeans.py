"""K-means on the mesh (adapt/realistic/kmeans.py) and the silhouette search for K (adapt/realistic/cluster_count.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import silhouette_score

from adapt.core import mesh as mesh_lib
from adapt.core.distributed import to_host
from adapt.realistic import cluster_count
from adapt.realistic.kmeans import KMeansResult, kmeans, kmeans_plus_plus


def kmeans_host(x: np.ndarray, k: int, seed: int = 0, mesh=None, **kw) -> tuple[np.ndarray, KMeansResult]:
    """Host rows (N, D) -> (labels (N,), result), sharded over `mesh` (default: all devices)."""
    mesh = mesh or mesh_lib.make_mesh()
    xs, mask = mesh_lib.shard_rows(np.asarray(x, np.float32), mesh)
    res = kmeans(xs, mask, k, jax.random.key(seed), mesh=mesh, **kw)
    return to_host(res.labels)[: len(x)], res


def _blobs(n=403, d=10, k=6, std=2.0, seed=0, unit=False):
    x, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    if unit:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y


@pytest.mark.parametrize("k,std,unit", [(6, 2.0, False), (4, 4.0, False), (8, 0.15, True)])
def test_inertia_matches_scikit_learn_within_one_percent(k, std, unit):
    x, _ = _blobs(k=k, std=std, unit=unit, seed=k)
    _, res = kmeans_host(x, k, seed=0, n_init=5, mesh=mesh_lib.make_mesh(8))
    sk = KMeans(k, n_init=5, random_state=0).fit(x)
    assert res.inertia <= sk.inertia_ * 1.01
    assert res.inertia >= sk.inertia_ * 0.99  # not lower than the optimum either: same objective
    # the reported inertia is the objective of the returned labels and centres
    lab = np.asarray(res.labels)[: len(x)]
    c = np.asarray(res.centers, np.float64)
    np.testing.assert_allclose(((x - c[lab]) ** 2).sum(), res.inertia, rtol=1e-4)


def test_same_answer_on_one_and_eight_devices():
    x, _ = _blobs(n=301, k=5, std=3.0)
    runs = [kmeans_host(x, 5, seed=3, n_init=4, mesh=mesh_lib.make_mesh(d)) for d in (1, 8)]
    (l1, r1), (l8, r8) = runs
    np.testing.assert_array_equal(l1, l8)
    assert r1.restart == r8.restart
    np.testing.assert_allclose(r1.inertias, r8.inertias, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(r1.centers), np.asarray(r8.centers), atol=1e-5)


def test_labels_are_numbered_by_first_appearance_and_padding_is_never_a_seed():
    x, _ = _blobs(n=37, k=3)
    mesh = mesh_lib.make_mesh(8)  # 37 rows -> 40 padded rows of zeros
    xs, mask = mesh_lib.shard_rows(x, mesh)
    xs = xs + jnp.where(mask[:, None], 0.0, 1e3)  # padding far away: a d^2 seed would pick it
    for r in range(5):
        seeds = np.asarray(kmeans_plus_plus(xs, mask, jax.random.key(r), k=3, mesh=mesh))
        assert np.abs(seeds).max() < 100
    res = kmeans(xs, mask, 3, jax.random.key(0), n_init=2, mesh=mesh)
    lab = np.asarray(res.labels)[:37]
    first = [int(np.flatnonzero(lab == c)[0]) for c in range(3)]
    assert first == sorted(first) and lab[0] == 0


def test_kmeans_plus_plus_draws_in_proportion_to_squared_distance():
    # rows: one at 0 (the forced first seed region), one at distance 1, one at distance 3
    x = np.array([[0.0], [0.0], [1.0], [3.0]], np.float32)
    mesh = mesh_lib.make_mesh(1)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    second = []
    for r in range(600):
        c = np.asarray(kmeans_plus_plus(xs, mask & (jnp.arange(4) != 1), jax.random.key(r), k=2))
        if c[0, 0] == 0.0:
            second.append(c[1, 0])
    frac = np.mean(np.asarray(second) == 3.0)
    assert abs(frac - 0.9) < 0.06  # d^2 = 1 vs 9


def test_k_out_of_range_is_an_error():
    x, _ = _blobs(n=10)
    with pytest.raises(ValueError, match="k-means needs"):
        kmeans_host(x, 11, mesh=mesh_lib.make_mesh(1))


@pytest.mark.parametrize("devices", [1, 8])
def test_silhouette_equals_scikit_learn(devices):
    x, y = _blobs(n=157, k=4, std=3.0)
    y = y.copy()
    y[5] = 4  # a singleton cluster: its silhouette is 0
    mesh = mesh_lib.make_mesh(devices)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    lab, _ = mesh_lib.shard_rows(y.astype(np.int32), mesh)
    got = cluster_count.silhouette(xs, mask, lab, 5, mesh=mesh, block=32)
    np.testing.assert_allclose(got, silhouette_score(x, y), atol=1e-5)


def test_search_k_follows_the_official_binary_search_and_narrows():
    calls = []

    def score(k):
        calls.append(k)
        return -abs(k - 13) + (0.5 if k == 14 else 0.0)  # best at 14 (13: -0, 14: -0.5)

    k, seen = cluster_count.search_k(score, 2, 60, rounds=3)
    assert k == 13 and seen[13] == 0.0
    assert len(calls) == len(set(calls))  # memoised
    assert calls[:3] == [2, 31, 60]


def test_estimate_k_finds_separated_blobs():
    x, _ = _blobs(n=300, k=5, std=0.6, seed=2)
    k, info = cluster_count.estimate_k(x, k_min=2, k_max=12, n_init=2, mesh=mesh_lib.make_mesh(8),
                                       block=64)
    assert k == 5 and info["sample_size"] == 300 and 5 in info["scores"]


def test_sample_rows_sizes():
    rows = cluster_count.sample_rows(1000, sample_min=100, sample_frac=0.5, sample_max=0, seed=0)
    assert len(rows) == 500 and np.all(np.diff(rows) > 0)
    assert len(cluster_count.sample_rows(1000, sample_min=800, sample_frac=0.5, sample_max=0, seed=0)) == 800
    assert len(cluster_count.sample_rows(1000, sample_min=800, sample_frac=0.5, sample_max=300, seed=0)) == 300
