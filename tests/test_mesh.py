import jax
import numpy as np

from adapt.core import mesh as mesh_lib


def test_shard_rows_pads_and_masks():
    mesh = mesh_lib.make_mesh()
    assert mesh.devices.size == 8
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    assert xs.shape == (16, 3) and mask.shape == (16,)
    assert np.asarray(mask).sum() == 10
    np.testing.assert_array_equal(np.asarray(xs)[:10], x)
    assert len(xs.addressable_shards) == 8
    np.testing.assert_allclose(np.asarray(mesh_lib.masked_mean(xs, mask)), x.mean(0), rtol=1e-6)


def test_random_draws_do_not_depend_on_device_count():
    def draw(n_dev):
        mesh = mesh_lib.make_mesh(n_dev)
        f = jax.jit(lambda k: jax.random.normal(k, (16, 4)), out_shardings=mesh_lib.pool_sharding(mesh))
        return np.asarray(f(jax.random.key(3)))

    np.testing.assert_array_equal(draw(1), draw(8))
