"""blocked_knn and the sparse operators / solvers of adapt/graph/sparse.py against dense NumPy oracles."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adapt.core import mesh as mesh_lib
from adapt.graph import sparse as graph
from adapt.graph.knn import NO_NEIGHBOUR, blocked_knn, euclidean_knn
from tests.reference_graph import knn_reference


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("n_devices", [1, 8])
def test_blocked_knn_matches_dense_on_padded_sharded_pool(n_devices):
    x = _unit(np.random.default_rng(0).normal(size=(203, 16)))
    mesh = mesh_lib.make_mesh(n_devices)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    vals, idx = blocked_knn(xs, xs, 7, exclude_self=True, block=32, key_mask=mask, mesh=mesh)
    ref_v, ref_i = knn_reference(x, x, 7, exclude_self=True)
    np.testing.assert_array_equal(np.asarray(idx)[:203], ref_i)
    np.testing.assert_allclose(np.asarray(vals)[:203], ref_v, atol=1e-5)
    assert np.asarray(idx).max() < 203  # padding rows are never neighbours


def test_ties_go_to_the_lower_index_across_tiles():
    x = np.repeat(np.eye(4, dtype=np.float32), 4, axis=0)  # groups of 4 identical rows
    mesh = mesh_lib.make_mesh(8)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    _, idx = blocked_knn(xs, xs, 5, exclude_self=True, block=4, key_mask=mask, mesh=mesh)
    _, ref_i = knn_reference(x, x, 5, exclude_self=True)
    np.testing.assert_array_equal(np.asarray(idx)[:16], ref_i)
    assert list(np.asarray(idx)[0, :3]) == [1, 2, 3]


def test_fewer_valid_keys_than_k_leave_an_empty_tail():
    x = _unit(np.random.default_rng(1).normal(size=(3, 4)))
    xs, mask = mesh_lib.shard_rows(x, mesh_lib.make_mesh(8))
    vals, idx = blocked_knn(xs, xs, 4, exclude_self=True, key_mask=mask, mesh=mesh_lib.make_mesh(8))
    assert (np.asarray(idx)[:3, 2:] == NO_NEIGHBOUR).all() and np.isneginf(np.asarray(vals)[:3, 2:]).all()


def test_euclidean_knn_on_rows_that_are_not_unit_norm():
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(64, 5)) * rng.uniform(0.2, 3, size=(64, 1))).astype(np.float32)
    d2, idx = euclidean_knn(x, x, 3, exclude_self=True, block=16)
    dense = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(dense, np.inf)
    np.testing.assert_array_equal(np.asarray(idx), np.argsort(dense, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(np.asarray(d2), np.sort(dense, axis=1)[:, :3], rtol=1e-4, atol=1e-4)


def test_knn_temporary_memory_grows_linearly_in_n():
    from adapt.graph.knn import _knn_init, _knn_tile, _stream_jit

    mesh = mesh_lib.make_mesh(1)

    def temp_bytes(n):
        x = jax.ShapeDtypeStruct((n, 32), jnp.float32)
        m = jax.ShapeDtypeStruct((n,), bool)
        lowered = _stream_jit.lower(x, m, (), x, m, (), tile_fn=_knn_tile, init_fn=_knn_init,
                                    static=(10, True), block=256, mesh=mesh)
        return lowered.compile().memory_analysis().temp_size_in_bytes

    small, large = temp_bytes(4096), temp_bytes(16384)
    assert large < 6 * small  # 4x the rows: linear (4x), never quadratic (16x)
    assert large < 16384 * 256 * 4 * 4  # far below one (N, block) score slab per query row block


def _random_neighbours(rng, n, m):
    return graph.Neighbours(jnp.asarray(rng.integers(0, n, size=(n, m)), jnp.int32),
                            jnp.asarray(rng.uniform(size=(n, m)), jnp.float32))


def _dense(nb, n):
    a = np.zeros((nb.idx.shape[0], n))
    np.add.at(a, (np.repeat(np.arange(nb.idx.shape[0]), nb.idx.shape[1]), np.asarray(nb.idx).ravel()),
              np.asarray(nb.w).ravel())
    return a


def test_gather_and_scatter_products_equal_the_dense_matrix():
    rng = np.random.default_rng(3)
    nb = _random_neighbours(rng, 40, 5)
    u = rng.normal(size=(40, 3)).astype(np.float32)
    a = _dense(nb, 40)
    np.testing.assert_allclose(np.asarray(graph.gather_sum(nb, jnp.asarray(u))), a @ u, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(graph.scatter_sum(nb, jnp.asarray(u), 40)), a.T @ u, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(graph.in_degree(nb, 40)), a.sum(0), rtol=1e-5)


def test_masked_softmax():
    z = jnp.asarray([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    mask = jnp.asarray([[True, False, True], [False, False, False]])
    p = np.asarray(graph.masked_softmax(z, mask))
    np.testing.assert_allclose(p[0], [np.exp(-2) / (1 + np.exp(-2)), 0, 1 / (1 + np.exp(-2))], rtol=1e-6)
    assert np.all(p[1] == 0) and np.isfinite(p).all()


def _normalized_operator(rng, n, m):
    nb = _random_neighbours(rng, n, m)
    w = _dense(nb, n)
    w = w + w.T
    d = w.sum(1)
    s = w / np.sqrt(d[:, None] * d[None, :])
    inv = graph.inv_sqrt_degree(graph.gather_sum(nb, jnp.ones((n, 1)))[:, 0] + graph.in_degree(nb, n))

    def apply_s(u):
        v = inv[:, None] * u
        return inv[:, None] * (graph.gather_sum(nb, v) + graph.scatter_sum(nb, v, n))

    return s, apply_s


def test_series_and_cg_equal_the_dense_inverse_and_the_error_decays_like_alpha_power():
    rng = np.random.default_rng(4)
    s, apply_s = _normalized_operator(rng, 120, 4)
    b = rng.normal(size=(120, 3))
    alpha = 0.5
    dense = np.linalg.solve(np.eye(120) - alpha * s, b)
    terms = graph.series_terms(alpha, 1e-7)
    assert alpha ** (terms + 1) / (1 - alpha) <= 1e-7 < alpha ** terms / (1 - alpha)
    z = graph.propagate_series(apply_s, jnp.asarray(b, jnp.float32), alpha, terms)
    np.testing.assert_allclose(np.asarray(z), dense, atol=1e-5)
    errors = [np.abs(np.asarray(graph.propagate_series(apply_s, jnp.asarray(b, jnp.float32), alpha, t))
                     - dense).max() for t in (2, 4, 6)]
    bound = [alpha ** (t + 1) / (1 - alpha) * np.linalg.norm(b, axis=0).max() for t in (2, 4, 6)]
    assert all(e <= bd for e, bd in zip(errors, bound)) and errors[0] > errors[1] > errors[2]

    def apply_l(u):
        return u - alpha * apply_s(u)

    z_cg, iters, rel = graph.conjugate_gradient(apply_l, jnp.asarray(b, jnp.float32), tol=1e-7, max_iters=100)
    np.testing.assert_allclose(np.asarray(z_cg), dense, atol=1e-5)
    assert (np.asarray(rel) <= 1e-6).all() and np.asarray(iters).max() < 100


def test_cg_freezes_converged_columns_and_skips_zero_columns():
    rng = np.random.default_rng(5)
    _, apply_s = _normalized_operator(rng, 60, 3)
    b = np.zeros((60, 2), np.float32)
    b[:, 1] = rng.normal(size=60)
    z, iters, _ = graph.conjugate_gradient(lambda u: u - 0.3 * apply_s(u), jnp.asarray(b), tol=1e-6)
    assert int(iters[0]) == 0 and np.all(np.asarray(z)[:, 0] == 0) and int(iters[1]) > 0


def test_power_iteration_estimates_the_spectral_radius():
    rng = np.random.default_rng(6)
    s, apply_s = _normalized_operator(rng, 80, 4)
    rho = graph.power_iteration(apply_s, jnp.asarray(rng.uniform(size=(80, 1)), jnp.float32), iters=300)
    assert abs(float(rho) - np.abs(np.linalg.eigvalsh(s)).max()) < 1e-3


def test_symmetric_self_knn_equals_the_general_path():
    x = _unit(np.random.default_rng(7).normal(size=(203, 16)))
    xs, mask = mesh_lib.shard_rows(x, mesh_lib.make_mesh(1))
    sym = blocked_knn(xs, xs, 6, exclude_self=True, block=32, key_mask=mask, symmetric=True)
    gen = blocked_knn(xs, xs, 6, exclude_self=True, block=32, key_mask=mask, symmetric=False)
    np.testing.assert_array_equal(np.asarray(sym[1]), np.asarray(gen[1]))
    np.testing.assert_allclose(np.asarray(sym[0]), np.asarray(gen[0]), atol=1e-6)
    ties = np.repeat(np.eye(4, dtype=np.float32), 4, axis=0)
    _, idx = blocked_knn(ties, ties, 5, exclude_self=True, block=4, symmetric=True)
    np.testing.assert_array_equal(np.asarray(idx), knn_reference(ties, ties, 5, exclude_self=True)[1])
