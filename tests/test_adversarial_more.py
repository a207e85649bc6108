"""Issue #17 (fail safe), items 7-12: `adapt predict` on bad images and tampered artifacts,
concurrent saves, permissions, settings, artifact mode, corrupt meta.json, a stride-0 `.pth`.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from adapt import cli
from tests.test_adversarial import ROOT, cli_run, run_args, tiny_clip, write_pool  # noqa: F401


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_clip):  # noqa: F811
    """A finished run on a small pool: (workdir, pool)."""
    tmp = tmp_path_factory.mktemp("trained")
    pool = write_pool(tmp / "pool")
    assert cli.main(run_args(tmp, tiny_clip, pool)) == 0
    return tmp / "run", pool


# ------------------------------------------------------------------ 7. adapt predict


def test_predict_skips_missing_and_undecodable_images_and_says_so(trained, tmp_path, capsys):
    run, pool = trained
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = [str(pool / "red" / "0.png"), str(pool / "green" / "1.png")]
    capsys.readouterr()
    assert cli.main(["predict", str(run / "classifier"), good[0], str(tmp_path / "missing.png"),
                     str(bad), good[1]]) == 0
    out = capsys.readouterr()
    rows = out.out.splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == good
    assert f"skipped {tmp_path / 'missing.png'}: cannot read file" in out.err
    assert f"skipped {bad}: " in out.err and "2 of 4 images skipped" in out.err


def _tampered(run, tmp_path, meta=None, weights=None, truncate=False):
    art = tmp_path / "art"
    shutil.copytree(run / "classifier", art)
    if meta is not None:
        m = json.loads((art / "meta.json").read_text())
        meta(m)
        (art / "meta.json").write_text(json.dumps(m))
    if weights is not None:
        t = load_file(str(art / "classifier.safetensors"))
        t["head.weights"] = weights(t["head.weights"])
        save_file(t, str(art / "classifier.safetensors"))
    if truncate:
        f = art / "classifier.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return art


TAMPERED = {
    "truncated safetensors": (dict(truncate=True), "classifier.safetensors cannot be read"),
    "class names as a string": (dict(meta=lambda m: m.update(class_names="green,red")), "class_names"),
    "NaN scale": (dict(meta=lambda m: m["head"].update(scale=float("nan"))), "head.scale"),
    "unknown view": (dict(meta=lambda m: m["head"].update(view="nope")), "head view 'nope'"),
    "weights of another width": (dict(weights=lambda w: np.ones((2, 5), np.float32)),
                                 "the head takes 5 features"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_predict_refuses_a_damaged_or_edited_artifact_with_one_line(trained, tmp_path, capsys, case):
    run, pool = trained
    kwargs, message = TAMPERED[case]
    art = _tampered(run, tmp_path, **kwargs)
    capsys.readouterr()
    assert cli.main(["predict", str(art), str(pool / "red" / "0.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"adapt: error: {art}") and message in err and err.count("\n") == 1


# ------------------------------------------------------------------ 8. concurrent saves


SAVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import numpy as np
    from adapt.output import artifact
    from adapt.core.method import Head
    from tests.fake_model import FakeModel
    import os, time
    model = FakeModel()
    print("ready", flush=True)
    while not os.path.exists({go!r}):  # all writers start together
        time.sleep(0.01)
    for k in range(60):
        head = Head(np.full((2, 8), {who} + k / 100, np.float32))
        artifact.save({path!r}, head=head, class_names=["a", "b"], model=model, model_source={{}},
                      method="zero_shot", config_json="{{}}", metrics={{"who": {who}}})
""")


def test_concurrent_saves_to_one_path_end_with_one_whole_artifact(tmp_path):
    from adapt.output.artifact import load

    target = tmp_path / "common" / "classifier"
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", SAVER.format(root=ROOT, who=w, path=str(target),
                                                                  go=str(go))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(6)]
    assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 6
    go.touch()
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    clf = load(target)
    who = clf.meta["metrics"]["who"]
    assert np.allclose(clf.head.weights, who + 0.59)  # the last save of one writer, whole
    assert [p.name for p in target.parent.iterdir() if p.is_dir()] == ["classifier"]


def test_the_artifact_folder_follows_the_umask_not_0700(tmp_path):
    from adapt.core.method import Head
    from adapt.output import artifact
    from tests.fake_model import FakeModel

    old = os.umask(0o022)
    try:
        artifact.save(tmp_path / "c", head=Head(np.ones((2, 8), np.float32)), class_names=["a", "b"],
                      model=FakeModel(), model_source={}, method="m", config_json="{}", metrics={})
    finally:
        os.umask(old)
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o755


def test_corrupt_meta_json_names_the_file(trained, tmp_path, capsys):
    run, pool = trained
    art = _tampered(run, tmp_path)
    (art / "meta.json").write_text('{"format_version": 1, "head": ')
    assert cli.main(["predict", str(art), str(pool / "red" / "0.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"adapt: error: {art / 'meta.json'} is not valid JSON")


# ------------------------------------------------------------------ 9. permissions


def test_a_read_only_workdir_fails_before_compute_with_one_line(tmp_path, tiny_clip):  # noqa: F811
    pool = write_pool(tmp_path / "pool")
    work = tmp_path / "run"
    work.mkdir()
    work.chmod(0o555)
    try:
        done = cli_run(run_args(tmp_path, tiny_clip, pool))
    finally:
        work.chmod(0o755)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"adapt: error: workdir {work} cannot be written (Permission denied)")
    assert not (tmp_path / "cache").exists()  # nothing was computed


def test_an_unwritable_cache_folder_is_one_line_not_a_traceback(tmp_path, tiny_clip):  # noqa: F811
    pool = write_pool(tmp_path / "pool")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache").chmod(0o555)
    try:
        done = cli_run(run_args(tmp_path, tiny_clip, pool))
    finally:
        (tmp_path / "cache").chmod(0o755)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"adapt: error: Permission denied: {tmp_path / 'cache'}")
    assert done.stderr.count("\n") == 1


# ------------------------------------------------------------------ 12. settings, .pth


@pytest.mark.parametrize("key", ["chunk_size", "batch_size"])
def test_a_chunk_or_batch_size_below_one_is_refused_before_compute(
        tmp_path, tiny_clip, capsys, key):  # noqa: F811
    pool = write_pool(tmp_path / "pool")
    assert cli.main(run_args(tmp_path, tiny_clip, pool) + ["--set", f"embed.{key}=0"]) == 2
    assert f"embed.{key} must be a whole number of at least 1" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_a_stride_0_tensor_is_refused_before_allocating(tmp_path):
    import pickle

    torch = pytest.importorskip("torch")
    from adapt.models.torch_pickle import load_state_dict

    path = tmp_path / "bomb.pth"
    torch.save({"w": torch.zeros(1).expand(20000, 20000)}, path)
    assert path.stat().st_size < 4096
    with pytest.raises(pickle.UnpicklingError, match="declares 400000000 elements"):
        load_state_dict(path)
