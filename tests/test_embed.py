import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from adapt.core import mesh as mesh_lib
from adapt.data.arrays import ArrayPool
from adapt.features.embed import cache_key, embed_pool
from tests.fake_model import FakeModel


def _images(n, seed=0, size=20):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_same_embedding_on_1_and_8_devices(tmp_path):
    pool, model = ArrayPool(_images(37)), FakeModel()
    one = embed_pool(model, pool, mesh_lib.make_mesh(1), cache_root=tmp_path / "a", batch_size=8,
                     chunk_size=16, progress=False)
    eight = embed_pool(model, pool, mesh_lib.make_mesh(8), cache_root=tmp_path / "b", batch_size=8,
                       chunk_size=16, progress=False)
    assert one.embeddings.shape == (37, 8)
    np.testing.assert_allclose(one.embeddings, eight.embeddings, atol=1e-5)
    np.testing.assert_array_equal(one.kept, np.arange(37))


def test_cache_is_reused_and_keyed_by_everything(tmp_path):
    pool, model = ArrayPool(_images(20)), FakeModel()
    mesh = mesh_lib.make_mesh()
    a = embed_pool(model, pool, mesh, cache_root=tmp_path, chunk_size=8, progress=False)
    b = embed_pool(model, pool, mesh, cache_root=tmp_path, chunk_size=8, progress=False)
    assert (a.chunks_computed, b.chunks_reused, b.chunks_computed) == (3, 3, 0)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    # Another model (other weights), other pixels or other options give another key.
    keys = {cache_key(model, pool), cache_key(FakeModel(seed=1), pool),
            cache_key(model, ArrayPool(_images(20, seed=1))), cache_key(model, ArrayPool(_images(20), invert=True))}
    assert len(keys) == 4


def test_bad_items_are_skipped_and_listed(tmp_path):
    from adapt.data.base import BadImage

    class Flaky(ArrayPool):
        def load(self, i):
            if i in (2, 5):
                raise BadImage("truncated file")
            return super().load(i)

    emb = embed_pool(FakeModel(), Flaky(_images(9)), mesh_lib.make_mesh(), cache_root=tmp_path,
                     progress=False)
    assert list(emb.kept) == [0, 1, 3, 4, 6, 7, 8]
    assert [r for _, r in emb.skipped] == ["truncated file"] * 2


RESUME_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import numpy as np
    from adapt.core import mesh as mesh_lib
    from adapt.data.arrays import ArrayPool
    from adapt.features.embed import embed_pool
    from tests.fake_model import FakeModel
    images = np.random.default_rng(0).integers(0, 256, size=(64, 20, 20, 3), dtype=np.uint8)
    def slow(c):
        print("chunk", c, flush=True)
        if c == 2:
            time.sleep({sleep})  # killed here
    embed_pool(FakeModel(), ArrayPool(images), mesh_lib.make_mesh(), cache_root={cache!r},
               chunk_size=8, progress=False, on_chunk=slow)
    print("done", flush=True)
""")


def test_killed_embedding_resumes_without_recomputing(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "job.py"
    script.write_text(RESUME_SCRIPT.format(root=root, cache=str(tmp_path / "cache"), sleep=30))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        while line.strip() != "chunk 2":  # three chunks written; the job now sleeps
            line = proc.stdout.readline()
            assert line, "the embedding job ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    chunks = sorted((tmp_path / "cache").rglob("chunk_*.npz"))
    assert len(chunks) == 3
    images = np.random.default_rng(0).integers(0, 256, size=(64, 20, 20, 3), dtype=np.uint8)
    pool, mesh = ArrayPool(images), mesh_lib.make_mesh()
    resumed = embed_pool(FakeModel(), pool, mesh, cache_root=tmp_path / "cache", chunk_size=8,
                         progress=False)
    assert resumed.chunks_reused == len(chunks) and resumed.chunks_computed == 8 - len(chunks)
    fresh = embed_pool(FakeModel(), pool, mesh, cache_root=tmp_path / "fresh", chunk_size=8,
                       progress=False)
    np.testing.assert_array_equal(resumed.embeddings, fresh.embeddings)


def test_empty_and_all_bad_pools_fail_clearly(tmp_path):
    from adapt.data.base import BadImage

    class AllBad(ArrayPool):
        def load(self, i):
            raise BadImage("not an image file")

    with pytest.raises(ValueError, match="no image of the pool could be decoded"):
        embed_pool(FakeModel(), AllBad(_images(3)), mesh_lib.make_mesh(), cache_root=tmp_path,
                   progress=False)
