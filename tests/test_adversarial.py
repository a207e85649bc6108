"""Issue #17 (fail safe), items 1-6: a leaking API key, odd file names and folder links, stale or
failed cache entries, interrupted writes. Items 7-12: test_adversarial_more.py.

Each test builds real files (and real servers, real kills) and checks what a user sees.
"""
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from adapt.realistic import phrases_llm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "sk-test-0123456789abcdef"


# ------------------------------------------------------------------ 1. the API key never leaks


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Replies per `self.server.mode`: 'redirect' (302 to server.location), 'echo_error' (400 with the
    request headers as body), 'echo_ok' (a chat reply whose content holds the headers)."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen.append(dict(self.headers))
        headers = "".join(f"{k}: {v}\n" for k, v in self.headers.items())
        mode = self.server.mode
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", self.server.location)
            self.end_headers()
            return
        if mode == "echo_error":
            body, code = headers.encode(), 400
        else:
            answer = json.dumps({"a": ["round", headers], "b": ["square"]})
            body, code = json.dumps({"choices": [{"message": {"content": answer}}]}).encode(), 200
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    servers = []

    def start(mode, location=None):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        srv.mode, srv.location, srv.seen = mode, location, []
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv, f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _phrases(tmp_path, base_url, monkeypatch):
    cands = tmp_path / "candidates.json"
    cands.write_text(json.dumps({"clusters": [{"candidates": [{"name": "a"}, {"name": "b"}]}]}))
    monkeypatch.setenv("TEST_KEY", KEY)
    return phrases_llm.main(["--candidates", str(cands), "--out", str(tmp_path / "p.json"),
                             "--base-url", base_url + "/v1", "--model", "m", "--api-key-env",
                             "TEST_KEY", "--repeats", "1", "--timeout", "10"])


def test_redirect_to_another_host_does_not_receive_the_key(tmp_path, http_server, monkeypatch, capsys):
    other, other_url = http_server("echo_ok")
    first, first_url = http_server("redirect", location=other_url + "/v1/chat/completions")
    assert _phrases(tmp_path, first_url, monkeypatch) == 2
    assert len(first.seen) == 1 and first.seen[0]["Authorization"] == f"Bearer {KEY}"
    assert other.seen == []  # the other host never got a request, let alone the key
    err = capsys.readouterr().err
    assert "redirect" in err and KEY not in err and not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("mode", ["echo_error", "echo_ok"])
def test_an_endpoint_echoing_headers_never_gets_the_key_printed_or_written(
        tmp_path, http_server, monkeypatch, capsys, mode):
    server, url = http_server(mode)
    code = _phrases(tmp_path, url, monkeypatch)
    assert server.seen and server.seen[0]["Authorization"] == f"Bearer {KEY}"  # it was sent there
    captured = capsys.readouterr()
    assert KEY not in captured.err + captured.out
    if mode == "echo_error":
        assert code == 2 and "HTTP 400" in captured.err
    else:
        assert code == 0
        written = (tmp_path / "p.json").read_text()
        assert KEY not in written and "redacted" in written


# ------------------------------------------------------------------ engine runs on small folder pools


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from tests.clip_fixtures import write_tiny_clip

    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def write_pool(root, n_per_class=4, classes=("red", "green"), seed=0):
    """Class folders of small coloured PNGs (class c: channel c raised)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            a = rng.integers(0, 60, size=(24, 24, 3), dtype=np.uint8)
            a[..., c] += 180
            Image.fromarray(a).save(root / name / f"{i}.png")
    return root


def run_args(tmp_path, model_dir, pool, workdir=None, *extra):
    return ["run", "configs/zero_shot.py", "--workdir", str(workdir or tmp_path / "run"), "--quiet",
            "--set", f"pool.path={pool}", "--set", f"model.path={model_dir}",
            "--set", f"embed.cache_dir={tmp_path / 'cache'}", "--set", "embed.batch_size=4", *extra]


def test_a_file_name_that_is_not_utf8_is_written_escaped_not_fatal(tmp_path, tiny_clip):
    from adapt import cli

    pool = write_pool(tmp_path / "pool")
    good = (pool / "red" / "0.png").read_bytes()
    with open(os.path.join(os.fsencode(pool / "red"), b"caf\xe9-\xff.png"), "wb") as f:
        f.write(good)
    assert cli.main(run_args(tmp_path, tiny_clip, pool)) == 0
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["n_images"], metrics["n_embedded"]) == (9, 9)
    rows = (run / "predictions.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 10 and any("caf\\xe9-\\xff.png" in r for r in rows)
    assert "9 embedded" in (run / "report.md").read_text(encoding="utf-8")


def test_a_link_to_the_pool_inside_the_pool_is_skipped_and_counted(tmp_path, tiny_clip):
    from adapt import cli

    pool = write_pool(tmp_path / "pool")
    os.symlink(".", pool / "loop")
    os.symlink("red", pool / "red_again")
    assert cli.main(run_args(tmp_path, tiny_clip, pool)) == 0
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["n_classes"], metrics["n_embedded"], metrics["n_skipped"]) == (2, 8, 2)
    report = (run / "report.md").read_text()
    assert "`loop/`: link to the pool folder itself" in report and "`red_again/`" in report


# ------------------------------------------------------------------ permissions (also as root)


def unprivileged(cmd: list[str]) -> list[str]:
    """`cmd` run without the power to read past file permissions: as root, drop the DAC
    capabilities (setpriv); as another user, unchanged."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", *cmd]


def cli_run(args, **kw) -> subprocess.CompletedProcess:
    """`python -m adapt.cli ARGS` from the repository root, unprivileged, output captured."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    return subprocess.run(unprivileged([sys.executable, "-m", "adapt.cli", *args]), cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300, **kw)


def test_an_unreadable_subfolder_is_skipped_counted_and_reported(tmp_path, tiny_clip):
    pool = write_pool(tmp_path / "pool")
    hidden = pool / "red" / "sub"
    hidden.mkdir()
    (pool / "red" / "0.png").rename(hidden / "0.png")
    hidden.chmod(0)
    try:
        done = cli_run(run_args(tmp_path, tiny_clip, pool))
    finally:
        hidden.chmod(0o755)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["n_embedded"], metrics["n_skipped"]) == (7, 1)
    assert "`red/sub/`: cannot read folder (Permission denied)" in (run / "report.md").read_text()


def test_a_failed_read_is_not_cached(tmp_path, tiny_clip):
    pool = write_pool(tmp_path / "pool")
    locked = pool / "green" / "2.png"
    locked.chmod(0)
    try:
        first = cli_run(run_args(tmp_path, tiny_clip, pool))
    finally:
        locked.chmod(0o644)  # fixed: same size, same mtime
    assert first.returncode == 0, first.stderr
    report = (tmp_path / "run" / "report.md").read_text()
    assert "`green/2.png`: cannot read file: Permission denied" in report
    second = cli_run(run_args(tmp_path, tiny_clip, pool))
    assert second.returncode == 0, second.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["n_embedded"], metrics["n_skipped"]) == (8, 0)


# ------------------------------------------------------------------ the embedding cache


def _embed(pool, cache, **kw):
    from adapt.core import mesh as mesh_lib
    from adapt.features.embed import embed_pool
    from tests.fake_model import FakeModel

    return embed_pool(FakeModel(), pool, mesh_lib.make_mesh(), cache_root=cache, chunk_size=4,
                      progress=False, **kw)


def test_an_image_replaced_with_size_and_mtime_kept_is_embedded_again(tmp_path):
    from adapt.data import FolderPool

    rng = np.random.default_rng(0)
    (tmp_path / "p").mkdir()
    for i in range(6):  # PPM: the byte size depends on the image size only
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(tmp_path / "p" / f"{i}.ppm")
    first = _embed(FolderPool(tmp_path / "p"), tmp_path / "cache")
    target = tmp_path / "p" / "3.ppm"
    st = target.stat()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # rsync -t, cp -p
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    again = _embed(FolderPool(tmp_path / "p"), tmp_path / "cache")
    fresh = _embed(FolderPool(tmp_path / "p"), tmp_path / "fresh")
    np.testing.assert_array_equal(again.embeddings, fresh.embeddings)
    assert not np.allclose(again.embeddings[3], first.embeddings[3])
    assert (again.chunks_reused, again.chunks_computed) == (1, 1)  # only the changed chunk


def test_a_truncated_cache_chunk_is_recomputed(tmp_path, capsys):
    from adapt.data.arrays import ArrayPool

    pool = ArrayPool(np.random.default_rng(0).integers(0, 256, (10, 20, 20, 3), np.uint8))
    first = _embed(pool, tmp_path)
    chunk = sorted(tmp_path.rglob("chunk_*.npz"))[1]
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    again = _embed(pool, tmp_path)
    assert (again.chunks_reused, again.chunks_computed) == (2, 1)
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    assert f"cache chunk {chunk} is unreadable" in capsys.readouterr().err


# ------------------------------------------------------------------ 6. a kill while writing


KILLED_WRITE = """
import os, sys, time
sys.path.insert(0, {root!r})
from adapt import cli
from adapt.output import report
where = {where!r}
if where == "staging":  # stop inside the write stage, after the classifier is written
    plot = report.plot_confidence
    def slow_plot(*a, **k):
        plot(*a, **k)
        print("stop", flush=True)
        time.sleep(120)
    report.plot_confidence = slow_plot
else:  # stop in the middle of the swap, the new classifier moved in, the rest not yet
    replace = os.replace
    def slow_replace(src, dst):
        replace(src, dst)
        if ".adapt-swap" in str(src) and str(dst).endswith("classifier"):
            print("stop", flush=True)
            time.sleep(120)
    os.replace = slow_replace
cli.main({args!r})
print("finished", flush=True)
"""


def _kill_when_stopped(tmp_path, args, where):
    script = tmp_path / "job.py"
    script.write_text(KILLED_WRITE.format(root=ROOT, where=where, args=args))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        while line.strip() != "stop":
            line = proc.stdout.readline()
            assert line and line.strip() != "finished", "the job ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _outputs_describe(run, n_embedded):
    """Every output of `run` describes one run that embedded `n_embedded` images."""
    meta = json.loads((run / "classifier" / "meta.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    rows = (run / "predictions.csv").read_text().splitlines()
    assert meta["metrics"]["n_embedded"] == metrics["n_embedded"] == len(rows) - 1 == n_embedded
    assert f"{n_embedded} embedded" in (run / "report.md").read_text()


@pytest.mark.parametrize("where", ["staging", "swap"])
def test_a_kill_while_writing_leaves_one_consistent_run(tmp_path, tiny_clip, where):
    from adapt import cli
    from adapt.output.artifact import load

    assert cli.main(run_args(tmp_path, tiny_clip, write_pool(tmp_path / "a", n_per_class=4))) == 0
    _outputs_describe(tmp_path / "run", 8)
    _kill_when_stopped(tmp_path, run_args(tmp_path, tiny_clip, write_pool(tmp_path / "b", 3)), where)
    if where == "staging":  # before the commit point: the previous run, whole
        _outputs_describe(tmp_path / "run", 8)
    else:  # after it: the first reader finishes the swap, then everything is the new run
        load(tmp_path / "run" / "classifier")
        _outputs_describe(tmp_path / "run", 6)
        assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")) == []
    assert cli.main(run_args(tmp_path, tiny_clip, tmp_path / "b")) == 0  # and the next run is clean
    _outputs_describe(tmp_path / "run", 6)
