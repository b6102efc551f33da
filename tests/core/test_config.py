"""Config schema: YAML + overrides, and one-line errors naming the file, the key and the allowed values."""

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
    with pytest.raises(ConfigError, match="'digits', 'cifar10', 'cifar100' or 'tiny_imagenet'"):
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
