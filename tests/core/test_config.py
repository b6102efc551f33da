"""Config schema: YAML + overrides, and one-line errors naming the file, the key and the allowed values."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastkd.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_overrides_apply_and_parse_yaml_scalars(tmp_path):
    cfg = load_config(write(tmp_path, "method: online_kd\nkd:\n  interval: 0\n"),
                      ["train.epochs=3", "kd.alpha=0.5", "data.shuffle=false", "optim.name=adamw"])
    assert (cfg.train.epochs, cfg.kd.alpha, cfg.data.shuffle, cfg.optim.name) == (3, 0.5, False, "adamw")


def test_bare_off_and_on_words_reach_the_string_choices():
    """YAML reads `off`/`on` as booleans; the keys with on/off choices take them as those words (the runtime's own
    hint says `train.amp=off`)."""
    cfg = load_config(None, ["train.amp=off", "train.compile=off", "train.sync_bn=on"])
    assert (cfg.train.amp, cfg.train.compile, cfg.train.sync_bn) == ("off", "off", "on")


@pytest.mark.parametrize("text, overrides, expected", [
    ("data:\n  datasett: cifar100\n", [], "unknown key 'data.datasett'"),
    ("data:\n  dataset: cifar1000\n", [], "data.dataset: 'cifar1000' is not allowed; choose one of"),
    ("train:\n  epochs: -1\n", [], "train.epochs: Input should be greater than or equal to 1"),
    ("kd:\n  alpha: high\n", [], "kd.alpha"),
    ("", ["method=spaced_online_kd", "kd.interval=0"], "spaced_online_kd needs kd.interval > 0"),
    ("- a\n- b\n", [], "expected a mapping"),
    ("data: [\n", [], "not valid YAML"),
])
def test_bad_values_name_file_and_key(tmp_path, text, overrides, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    if not overrides:
        assert str(path) in message


def test_literal_error_lists_allowed_values(tmp_path):
    allowed = "'digits', 'cifar10', 'cifar100', 'tiny_imagenet', 'imagenet' or 'imagenet_100'"
    with pytest.raises(ConfigError, match=allowed):
        load_config(write(tmp_path, "data:\n  dataset: imagenet21k\n"))


def test_cli_exit_code_two_without_traceback(tmp_path):
    path = write(tmp_path, "optim:\n  name: lion\n")
    proc = subprocess.run([sys.executable, "-m", "fastkd.cli", "plan", str(path)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert "optim.name: 'lion' is not allowed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_every_shipped_config_validates():
    configs = sorted((REPO / "configs").rglob("*.yaml"))
    assert configs, "no configs found"
    for path in configs:
        load_config(path)


def test_duplicate_keys_are_refused_at_any_depth(tmp_path):
    with pytest.raises(ConfigError, match=r"duplicate key 'train' \(keep one\) at line 3"):
        load_config(write(tmp_path, "train:\n  epochs: 1\ntrain:\n  epochs: 2\n"))
    with pytest.raises(ConfigError, match=r"duplicate key 'lr' \(keep one\) at line 3, column 3"):
        load_config(write(tmp_path, "optim:\n  lr: 0.1\n  lr: 0.2\n"))


@pytest.mark.parametrize("override, key", [
    ("optim.lr=.inf", "optim.lr"), ("kd.interval=.nan", "kd.interval"), ("ema.interval=.inf", "ema.interval"),
    ("model.downsample_factor=.nan", "model.downsample_factor"), ("kd.temperature=.inf", "kd.temperature"),
    ("optim.betas=[0.9,.nan]", "optim.betas.1"), ("dropout.space=.inf", "dropout.space"),
])
def test_non_finite_numbers_are_refused(override, key):
    with pytest.raises(ConfigError, match=f"{re.escape(key)}: Input should be a finite number"):
        load_config(None, [override])


def test_error_names_the_override_that_set_the_key_else_the_file(tmp_path):
    path = write(tmp_path, "kd:\n  alpha: 2.0\n")
    with pytest.raises(ConfigError, match=r"^" + re.escape(f"{path}: kd.alpha: ")):
        load_config(path, ["train.epochs=3"])
    with pytest.raises(ConfigError, match=r"^command line override 'kd.alpha=5': kd.alpha: "):
        load_config(write(tmp_path, "train:\n  epochs: 2\n"), ["kd.alpha=5"])
    with pytest.raises(ConfigError, match=r"^command line override 'optim.nesterov=true': optim.nesterov: "):
        load_config(path, ["kd.alpha=0.5", "optim.momentum=0", "optim.nesterov=true"])


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", ".hidden", "/abs"])
def test_name_is_a_plain_folder_name(name):
    with pytest.raises(ConfigError, match="name: must be a plain folder name"):
        load_config(None, [f"name='{name}'"])
    assert load_config(None, ["name=run-1.v2"]).name == "run-1.v2"


def test_seed_betas_and_nesterov_bounds():
    assert load_config(None, [f"seed={2**32 - 1}"]).seed == 2**32 - 1
    for bad in ([f"seed={2**32}"], ["seed=-1"], ["optim.betas=[1.0,0.9]"], ["optim.nesterov=true", "optim.momentum=0"],
                ["optim.nesterov=true", "optim.name=adamw"]):
        with pytest.raises(ConfigError):
            load_config(None, bad)
    assert load_config(None, ["optim.nesterov=true"]).optim.nesterov


def test_describe_lists_every_key_with_type_default_allowed_and_description():
    from fastkd.config import ExperimentConfig, describe

    def leaf_keys(model, prefix=""):  # sections nest (log.wandb.project)
        for name, field in model.model_fields.items():
            if hasattr(field.annotation, "model_fields"):
                yield from leaf_keys(field.annotation, f"{prefix}{name}.")
            else:
                yield prefix + name

    lines = describe()
    keys = [line.split()[0] for line in lines[::2]]
    assert sorted(keys) == sorted(leaf_keys(ExperimentConfig))
    assert "log.wandb.mode" in keys
    assert all(desc.startswith("    ") and desc.strip() for desc in lines[1::2]), "a key has no description"
    text = "\n".join(lines)
    assert "optim.lr  (float, default 0.01, allowed: > 0, finite)" in text
    assert ("data.dataset  (choice, default digits, allowed: digits, cifar10, cifar100, tiny_imagenet, imagenet, "
            "imagenet_100)") in text
    assert "train.max_steps  (int or null, default null, allowed: >= 1 or null)" in text


@pytest.mark.parametrize("args", [["--help"], ["--describe"]])
def test_python_m_fastkd_config_help_and_describe(tmp_path, args):
    proc = subprocess.run([sys.executable, "-m", "fastkd.config", *args], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert ("--describe" in proc.stdout) if args == ["--help"] else ("kd.interval  (float" in proc.stdout)
