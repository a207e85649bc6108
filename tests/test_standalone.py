"""The product stands alone: a copy of the repository with nothing beside it runs the main job, a
wheel carries every data file the engine reads, configs can be named, and a run prints no noise."""
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from adapt import cli
from adapt.core.config import ConfigError, config_names, load_config

ROOT = Path(__file__).resolve().parents[1]


def _repo_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a clone of this tree (plus edits) holds."""
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                         capture_output=True, check=True)
    return [f for f in out.stdout.decode().split("\0") if f and (ROOT / f).is_file()]


def _clean_env(tmp_path) -> dict:
    """The environment minus anything pointing into the development tree."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRANSFORMERS_NO_ADVISORY_WARNINGS")}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["HOME"] = os.environ.get("HOME", str(tmp_path))
    return env


@pytest.fixture(scope="module")
def lone_copy(tmp_path_factory):
    """The repository's files copied into an empty folder: no sibling folders, no runs/, no caches."""
    top = tmp_path_factory.mktemp("alone")
    copy = top / "vlm-adapt"
    for f in _repo_files():
        (copy / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, copy / f)
    assert sorted(p.name for p in top.iterdir()) == ["vlm-adapt"]
    return copy


@pytest.mark.slow
def test_main_job_runs_from_a_copy_with_nothing_beside_it(lone_copy, tmp_path):
    env = _clean_env(tmp_path)
    where = subprocess.run([sys.executable, "-c", "import adapt; print(adapt.__file__)"], cwd=lone_copy,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(lone_copy), where  # the copy's code runs, not the dev tree's
    argv = [sys.executable, "-m", "adapt.cli", "run", "zero_shot:fashion_mnist", "--workdir", "W",
            "--quiet", "--set", "runlocal=True", "--set", f"embed.cache_dir={tmp_path / 'cache'}"]
    run = subprocess.run(argv, cwd=lone_copy, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((lone_copy / "W" / "metrics.json").read_text())
    assert metrics["n_images"] == 256 and metrics["n_skipped"] == 0
    assert metrics["centered_zero_shot_accuracy"] > 0.3  # ten classes: chance is 0.1
    from PIL import Image

    images = [tmp_path / f"{i}.png" for i in range(2)]
    for i, p in enumerate(images):
        Image.new("L", (28, 28), 40 + 150 * i).save(p)
    predict = subprocess.run([sys.executable, "-m", "adapt.cli", "predict", "W/classifier", *map(str, images)],
                             cwd=lone_copy, env=env, capture_output=True, text=True, timeout=300)
    assert predict.returncode == 0, predict.stderr[-3000:]
    rows = predict.stdout.splitlines()
    assert rows[0] == "path,predicted_class,confidence" and len(rows) == 3
    names = json.loads((lone_copy / "W" / "classifier" / "meta.json").read_text())["class_names"]
    assert all(r.split(",")[1] in names for r in rows[1:])


def test_wheel_carries_every_asset_and_config(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("vlm_adapt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [str(p.relative_to(ROOT)) for p in (ROOT / "adapt" / "assets").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts]
    assert {"adapt/assets/imagenet_classes.json", "adapt/assets/clip-tokenizer/vocab.json",
            "adapt/assets/clip-tokenizer/merges.txt"} <= set(shipped)
    assert set(shipped) <= names, set(shipped) - names
    assert {f"configs/{n}.py" for n in config_names()} <= names


def test_configs_can_be_named(tmp_path, capsys):
    assert load_config("zlap:fashion_mnist") == load_config(str(ROOT / "configs" / "zlap.py") + ":fashion_mnist")
    assert load_config("zero_shot").pool.kind == "folder"
    with pytest.raises(ConfigError, match="did you mean 'zero_shot'"):
        load_config("zero_shto")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nothing.py"))
    assert cli.main(["methods"]) == 0
    listed = [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:] if line.strip()
              and not line.startswith("adapt run") and not line.startswith("PRESET")]
    assert set(config_names()) <= set(listed)
    assert {"zero_shot", "zlap", "musc"} <= set(config_names()) and "common" not in config_names()


def _stderr_of(code: str, tmp_path) -> str:
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=_clean_env(tmp_path), timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stderr


def test_no_transformers_advisory_without_pytorch(tmp_path):
    hide_torch = "import sys; sys.modules['torch'] = None; "  # find_spec('torch') is then None
    plain = _stderr_of(hide_torch + "import transformers", tmp_path)
    assert "PyTorch was not found" in plain  # the noise exists without us: the check can fail
    assert _stderr_of(hide_torch + "import adapt, transformers; from adapt.models.tokenizer import "
                      "load_tokenizer; load_tokenizer()", tmp_path) == ""


def test_no_decompression_bomb_warning_for_a_skipped_file(tmp_path):
    from PIL import Image

    Image.new("RGB", (12, 12)).save(tmp_path / "mid.png")  # 144 pixels, over a limit of 100
    code = ("from PIL import Image; from adapt.data.decode import decode_image; from adapt.data.base "
            "import BadImage\nImage.MAX_IMAGE_PIXELS = 100\n"
            f"try:\n    decode_image({str(tmp_path / 'mid.png')!r})\nexcept BadImage as e:\n    print(e)")
    assert _stderr_of(code, tmp_path) == ""
    noisy = _stderr_of("from PIL import Image; Image.MAX_IMAGE_PIXELS = 100; "
                       f"Image.open({str(tmp_path / 'mid.png')!r})", tmp_path)
    assert "DecompressionBombWarning" in noisy  # PIL alone warns: the check can fail


def test_output_piped_into_head_stops_quietly(tmp_path):
    run = subprocess.run(f"{sys.executable} -m adapt.cli methods | head -1", shell=True, cwd=ROOT,
                         capture_output=True, text=True, env=_clean_env(tmp_path), timeout=300)
    assert run.stdout.startswith("method") and len(run.stdout.splitlines()) == 1
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr, run.stderr
