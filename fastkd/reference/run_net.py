"""`fastkd compat run_net --mode train --cfg FILE.yaml [KEY VALUE ...]`: the ViT reference's pycls entry point.

The reference (SunGL001/Spaced-KD ``vit/run_net.py``) reads a yacs YAML file and ``KEY VALUE`` overrides into its
global config (docs/semantics.md, ViT trainer). Here every key is looked up in one table: keys fastkd honours map
onto an :class:`ExperimentConfig` (``semantics: reference``); keys that only steer the reference's environment
(GPUs, output folder, loader workers, logging) are accepted with one note each; keys at a value fastkd cannot
honour stop with one line naming the key. Unknown keys stop too, as they do in yacs. The architecture keys
(``TRANSFORMER.*``, ``PIT.*``, ...) must equal the hyper-parameters of the reference model fastkd builds.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import dump_config, validate
from ..config.loading import parse_yaml
from .errors import CompatError

ENVIRONMENT_KEYS = {
    "NUM_GPUS": "fastkd trains on one device with the total TRAIN.BATCH_SIZE",
    "MAX_GPUS_PER_NODE": "multi-GPU launch setting",
    "OUT_DIR": "runs go to output_dir/name (--set output_dir=... name=...)",
    "CFG_DEST": "fastkd writes config.yaml into the run folder",
    "LOG_DEST": "fastkd logs to the terminal and metrics.csv",
    "LOG_PERIOD": "fastkd logs per epoch",
    "DIST_BACKEND": "multi-GPU launch setting",
    "HOST": "multi-GPU launch setting",
    "PORT_RANGE": "multi-GPU launch setting",
    "DOWNLOAD_CACHE": "fastkd downloads no weights",
    "DESC": "description only",
    "VERBOSE": "logging only",
    "DATA_LOADER.NUM_WORKERS": "fastkd's data pipeline runs on the training device",
    "DATA_LOADER.PIN_MEMORY": "fastkd's data pipeline runs on the training device",
    "CUDNN.BENCHMARK": "fastkd picks its kernels itself",
    "PREC_TIME.WARMUP_ITER": "fastkd runs no timing benchmark before epoch 0 (fastkd bench does)",
    "PREC_TIME.NUM_ITER": "fastkd runs no timing benchmark before epoch 0 (fastkd bench does)",
    "TRAIN.AUTO_RESUME": "resume a fastkd run with --resume",
    "TRAIN.SPLIT": "the training split",
    "TEST.SPLIT": "the data set's test split",
    **{f"LAUNCH.{k}": "cluster launch setting" for k in ("MODE", "MAX_RETRY", "NAME", "COMMENT", "CPUS_PER_GPU",
                                                        "MEM_PER_GPU", "PARTITION", "GPU_TYPE", "TIME_LIMIT",
                                                        "EMAIL")},
}
"""Keys that only steer the reference's environment: accepted, one note each."""

DEFAULTS: dict[str, Any] = {
    "DISTILLATION.ENABLE_INTER": False, "DISTILLATION.INTER_TRANSFORM": "linear", "DISTILLATION.INTER_LOSS": "l2",
    "DISTILLATION.INTER_TEACHER_INDEX": [], "DISTILLATION.INTER_STUDENT_INDEX": [], "DISTILLATION.INTER_WEIGHT": 2.5,
    "DISTILLATION.ENABLE_LOGIT": False, "DISTILLATION.LOGIT_LOSS": "soft", "DISTILLATION.LOGIT_TEMP": 1.0,
    "DISTILLATION.LOGIT_WEIGHT": 0.5, "DISTILLATION.TEACHER_MODEL": "ResNet", "DISTILLATION.TEACHER_WEIGHTS": None,
    "DISTILLATION.TEACHER_IMG_SIZE": 32, "DISTILLATION.ONLINE": False, "DISTILLATION.SPACE": False,
    "DISTILLATION.SPACE_INTERVAL": 0.0, "DISTILLATION.OFFLINE": False, "DISTILLATION.FEATURE_FILE": None,
    "MODEL.TYPE": "ResNet", "MODEL.IMG_SIZE": 224, "MODEL.IN_CHANNELS": 3, "MODEL.NUM_CLASSES": 100,
    "MODEL.LOSS_FUN": "cross_entropy",
    "CNN.DEPTH": 56, "CNN.ACTIVATION_FUN": "relu", "CNN.ACTIVATION_INPLACE": True, "CNN.BN_EPS": 1e-5,
    "CNN.BN_MOMENTUM": 0.1, "CNN.ZERO_INIT_FINAL_BN_GAMMA": False,
    "RESNET.TRANS_FUN": "basic_transform", "RESNET.NUM_GROUPS": 1, "RESNET.WIDTH_PER_GROUP": 64,
    "RESNET.STRIDE_1X1": True,
    "TRANSFORMER.PATCH_SIZE": None, "TRANSFORMER.PATCH_STRIDE": None, "TRANSFORMER.PATCH_PADDING": None,
    "TRANSFORMER.HIDDEN_DIM": None, "TRANSFORMER.DEPTH": None, "TRANSFORMER.NUM_HEADS": None,
    "TRANSFORMER.MLP_RATIO": None, "TRANSFORMER.LN_EPS": 1e-6, "TRANSFORMER.DROP_RATE": None,
    "TRANSFORMER.DROP_PATH_RATE": None, "TRANSFORMER.ATTENTION_DROP_RATE": None,
    "T2T.TOKEN_DIM": 64, "T2T.KERNEL_SIZE": [7, 3, 3], "T2T.STRIDE": [4, 2, 2], "T2T.PADDING": [2, 1, 1],
    "PIT.STRIDE": 8, "PVT.SR_RATIO": [8, 4, 2, 1], "CONVIT.LOCAL_LAYERS": 10, "CONVIT.LOCALITY_STRENGTH": 1.0,
    "CVT.WITH_CLS_TOKEN": [False, False, True], "CVT.QKV_PROJ_METHOD": ["dw_bn", "dw_bn", "dw_bn"],
    "CVT.KERNEL_QKV": [3, 3, 3], "CVT.STRIDE_KV": [2, 2, 2], "CVT.STRIDE_Q": [1, 1, 1], "CVT.PADDING_KV": [1, 1, 1],
    "CVT.PADDING_Q": [1, 1, 1],
    "OPTIM.OPTIMIZER": "sgd", "OPTIM.BASE_LR": 0.1, "OPTIM.MIN_LR": 0.0, "OPTIM.HEAD_LR_RATIO": 1.0,
    "OPTIM.LR_POLICY": "cos", "OPTIM.STEPS": [], "OPTIM.LR_MULT": 0.1, "OPTIM.MAX_EPOCH": 200, "OPTIM.MOMENTUM": 0.9,
    "OPTIM.DAMPENING": 0.0, "OPTIM.NESTEROV": True, "OPTIM.BETA1": 0.9, "OPTIM.BETA2": 0.999,
    "OPTIM.WEIGHT_DECAY": 5e-4, "OPTIM.WARMUP_FACTOR": 0.1, "OPTIM.WARMUP_EPOCHS": 0, "OPTIM.EMA_ALPHA": 1e-5,
    "OPTIM.EMA_UPDATE_PERIOD": 0,
    "TRAIN.DATASET": "", "TRAIN.SPLIT": "train", "TRAIN.BATCH_SIZE": 128, "TRAIN.AUTO_RESUME": True,
    "TRAIN.WEIGHTS": "", "TRAIN.MIXED_PRECISION": False, "TRAIN.LABEL_SMOOTHING": 0.0, "TRAIN.MIXUP_ALPHA": 0.0,
    "TRAIN.CUTMIX_ALPHA": 0.0, "TRAIN.STRONG_AUGMENTATION": True,
    "TEST.DATASET": "", "TEST.SPLIT": "val", "TEST.BATCH_SIZE": 200, "TEST.WEIGHTS": "",
    "DATA_LOADER.NUM_WORKERS": 8, "DATA_LOADER.PIN_MEMORY": True, "CUDNN.BENCHMARK": True,
    "PREC_TIME.WARMUP_ITER": 3, "PREC_TIME.NUM_ITER": 30,
    "LAUNCH.MODE": "local", "LAUNCH.MAX_RETRY": 3, "LAUNCH.NAME": "pycls_job", "LAUNCH.COMMENT": "",
    "LAUNCH.CPUS_PER_GPU": 10, "LAUNCH.MEM_PER_GPU": 60, "LAUNCH.PARTITION": "devlab", "LAUNCH.GPU_TYPE": "volta",
    "LAUNCH.TIME_LIMIT": 4200, "LAUNCH.EMAIL": "",
    "DESC": "", "VERBOSE": True, "NUM_GPUS": 1, "MAX_GPUS_PER_NODE": 8, "OUT_DIR": None, "CFG_DEST": "config.yaml",
    "RNG_SEED": 1, "LOG_DEST": "stdout", "LOG_PERIOD": 10, "DIST_BACKEND": "nccl", "HOST": "localhost",
    "PORT_RANGE": [10000, 65000], "DOWNLOAD_CACHE": "/tmp/pycls-download-cache",
}
"""The reference's config.py defaults, flattened: the keys a file or override may set (yacs refuses others)."""

_T = "TRANSFORMER."
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "deit_tiny": {_T + "PATCH_SIZE": 16, _T + "HIDDEN_DIM": 192, _T + "DEPTH": 12, _T + "NUM_HEADS": 3,
                  _T + "MLP_RATIO": 4},
    "pit_ti": {_T + "PATCH_SIZE": 16, _T + "HIDDEN_DIM": [64, 128, 256], _T + "DEPTH": [2, 6, 4],
               _T + "NUM_HEADS": [2, 4, 8], _T + "MLP_RATIO": 4, "PIT.STRIDE": 8},
    "pvt_tiny": {_T + "PATCH_SIZE": [4, 2, 2, 2], _T + "HIDDEN_DIM": [64, 128, 320, 512], _T + "DEPTH": [2, 2, 2, 2],
                 _T + "NUM_HEADS": [1, 2, 5, 8], _T + "MLP_RATIO": [8, 8, 4, 4], "PVT.SR_RATIO": [8, 4, 2, 1]},
    "pvt_v2_b0": {_T + "PATCH_SIZE": [7, 3, 3, 3], _T + "PATCH_STRIDE": [4, 2, 2, 2],
                  _T + "HIDDEN_DIM": [32, 64, 160, 256], _T + "DEPTH": [2, 2, 2, 2], _T + "NUM_HEADS": [1, 2, 5, 8],
                  _T + "MLP_RATIO": [8, 8, 4, 4], "PVT.SR_RATIO": [8, 4, 2, 1]},
    "t2t_vit_7": {_T + "PATCH_SIZE": 16, _T + "HIDDEN_DIM": 256, _T + "DEPTH": 7, _T + "NUM_HEADS": 4,
                  _T + "MLP_RATIO": 2, "T2T.TOKEN_DIM": 64, "T2T.KERNEL_SIZE": [7, 3, 3], "T2T.STRIDE": [4, 2, 2],
                  "T2T.PADDING": [2, 1, 1]},
    "t2t_vit_14": {_T + "PATCH_SIZE": 16, _T + "HIDDEN_DIM": 384, _T + "DEPTH": 14, _T + "NUM_HEADS": 6,
                   _T + "MLP_RATIO": 3, "T2T.TOKEN_DIM": 64, "T2T.KERNEL_SIZE": [7, 3, 3], "T2T.STRIDE": [4, 2, 2],
                   "T2T.PADDING": [2, 1, 1]},
    "cvt_13": {_T + "PATCH_SIZE": [7, 3, 3], _T + "PATCH_STRIDE": [4, 2, 2], _T + "PATCH_PADDING": [2, 1, 1],
               _T + "HIDDEN_DIM": [64, 192, 384], _T + "DEPTH": [1, 2, 10], _T + "NUM_HEADS": [1, 3, 6],
               _T + "MLP_RATIO": 4, _T + "LN_EPS": 1e-5, "CVT.WITH_CLS_TOKEN": [False, False, True],
               "CVT.QKV_PROJ_METHOD": ["dw_bn", "dw_bn", "dw_bn"], "CVT.KERNEL_QKV": [3, 3, 3],
               "CVT.STRIDE_KV": [2, 2, 2], "CVT.STRIDE_Q": [1, 1, 1], "CVT.PADDING_KV": [1, 1, 1],
               "CVT.PADDING_Q": [1, 1, 1]},
    "convit_tiny": {_T + "PATCH_SIZE": 16, _T + "HIDDEN_DIM": 192, _T + "DEPTH": 12, _T + "NUM_HEADS": 4,
                    _T + "MLP_RATIO": 4, "CONVIT.LOCAL_LAYERS": 10, "CONVIT.LOCALITY_STRENGTH": 1.0},
}
"""The hyper-parameters of each reference ViT as its configs give them: fastkd builds exactly these."""

MODEL_TYPES = {"DeiT": ("deit_tiny",), "PiT": ("pit_ti",), "PVT": ("pvt_tiny",), "PVTv2": ("pvt_v2_b0",),
               "T2TViT": ("t2t_vit_7", "t2t_vit_14"), "CvT": ("cvt_13",), "ConViT": ("convit_tiny",)}
"""MODEL.TYPE -> the fastkd models it can be (T2T-ViT-7 and -14 share a type and differ in TRANSFORMER.DEPTH)."""

DATASETS = {"cifar100": ("cifar100", 100), "tiny_imagenet": ("tiny_imagenet", 200)}
_SECTION_KEYS = ("T2T.", "PIT.", "PVT.", "CONVIT.", "CVT.")
_RESNET_KEYS = ("CNN.", "RESNET.")
_DISTILLATION_ONLY = ("DISTILLATION.INTER_", "DISTILLATION.LOGIT_", "DISTILLATION.TEACHER_", "DISTILLATION.ONLINE",
                      "DISTILLATION.SPACE", "DISTILLATION.OFFLINE", "DISTILLATION.FEATURE_FILE")


@dataclass
class Translation:
    """A pycls config, translated: the raw fastkd config dict and one note per accepted-but-unused key."""

    raw: dict[str, Any]
    notes: list[str]


def _flatten(tree: Any, source: str, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        raise CompatError(f"{source}: expected a YAML mapping of pycls config sections, found {type(tree).__name__}")
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, source, name + ".")
        else:
            flat[name] = value
    return flat


def _check_known(key: str, source: str) -> None:
    if key not in DEFAULTS:
        raise CompatError(f"{source}: {key} is not a pycls config key (the reference's yacs config refuses it too); "
                          "check its spelling against vit/pycls/core/config.py")


def _check_type(key: str, value: Any, source: str) -> Any:
    """yacs' type check against the default (an int is accepted for a float, a list for a tuple); keys whose
    default is None take any value."""
    default = DEFAULTS[key]
    if default is None:
        return value
    expected = list if isinstance(default, (list, tuple)) else type(default)
    if isinstance(value, tuple):
        value = list(value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        raise CompatError(f"{source}: {key} {value!r}: expected type {expected.__name__}, like the reference's default "
                          f"{default!r}")
    return value


def _override_value(text: str) -> Any:
    """A command-line value as yacs reads it: a Python literal where it parses as one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_pycls_config(path: str | Path, overrides: list[str]) -> dict[str, Any]:
    """The file's keys merged over the reference's defaults, then the ``KEY VALUE`` overrides (flat keys)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CompatError(f"--cfg {path}: cannot be read ({exc.strerror or type(exc).__name__}); pass a pycls "
                          "YAML file") from None
    except UnicodeDecodeError as exc:
        raise CompatError(f"--cfg {path}: not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset "
                          f"{exc.start}); pass a pycls YAML file saved as UTF-8") from None
    try:
        tree = parse_yaml(text) or {}  # strict: a duplicate key is refused, not silently the last one
    except ValueError as exc:
        raise CompatError(f"--cfg {path}: not valid YAML ({exc})") from None
    given = _flatten(tree, f"--cfg {path}")
    for key in given:
        _check_known(key, f"--cfg {path}")
        given[key] = _check_type(key, given[key], f"--cfg {path}")
    if len(overrides) % 2:
        raise CompatError(f"overrides come in KEY VALUE pairs; {overrides[-1]} has no value")
    for key, text_value in zip(overrides[::2], overrides[1::2]):
        _check_known(key, "override")
        given[key] = _check_type(key, _override_value(text_value), "override")
    return given


def _refuse(key: str, value: Any, why: str) -> CompatError:
    return CompatError(f"{key} {value!r}: {why}")


def _architecture(values: dict[str, Any]) -> str:
    model_type = values["MODEL.TYPE"]
    if model_type not in MODEL_TYPES:
        raise _refuse("MODEL.TYPE", model_type, f"fastkd's run_net builds the reference ViTs "
                      f"({', '.join(MODEL_TYPES)}); the pycls ResNets train with `fastkd train`")
    for architecture in MODEL_TYPES[model_type]:
        expected = ARCHITECTURES[architecture]
        if all(values.get(k) == v for k, v in expected.items() if k.startswith(_T) and k.endswith("DEPTH")):
            break
    for key, expected_value in expected.items():
        if values[key] != expected_value and not (key == _T + "LN_EPS"):
            raise _refuse(key, values[key], f"fastkd builds {architecture} with the reference's {expected_value!r}; "
                          "other hyper-parameters are not supported")
    eps = expected.get(_T + "LN_EPS", 1e-6)
    if values[_T + "LN_EPS"] != eps:
        raise _refuse(_T + "LN_EPS", values[_T + "LN_EPS"], f"{architecture} uses LayerNorm eps {eps}")
    return architecture


def translate(values: dict[str, Any], given: set[str], source: str) -> Translation:
    """The pycls config ``values`` (defaults + file + overrides; ``given`` = the keys set explicitly) as fastkd's."""
    notes = [f"{key}: ignored ({ENVIRONMENT_KEYS[key]})" for key in sorted(given) if key in ENVIRONMENT_KEYS]
    architecture = _architecture(values)
    for key in sorted(given):
        if key.startswith(_SECTION_KEYS) and key not in ARCHITECTURES[architecture]:
            notes.append(f"{key}: no effect on MODEL.TYPE {values['MODEL.TYPE']}")
        if key.startswith(_RESNET_KEYS):
            notes.append(f"{key}: no effect (ResNet setting; teacher and student are {values['MODEL.TYPE']})")

    dataset = values["TRAIN.DATASET"]
    if dataset not in DATASETS:
        raise _refuse("TRAIN.DATASET", dataset, f"choose one of: {', '.join(DATASETS)}")
    if values["TEST.DATASET"] not in ("", dataset):
        raise _refuse("TEST.DATASET", values["TEST.DATASET"], f"fastkd tests on TRAIN.DATASET's split ({dataset})")
    fastkd_dataset, classes = DATASETS[dataset]
    if values["MODEL.NUM_CLASSES"] != classes:
        raise _refuse("MODEL.NUM_CLASSES", values["MODEL.NUM_CLASSES"], f"{dataset} has {classes} classes")
    for key, allowed in (("MODEL.IN_CHANNELS", 3), ("MODEL.LOSS_FUN", "cross_entropy"),
                         ("TRAIN.LABEL_SMOOTHING", 0.0), ("TRAIN.MIXUP_ALPHA", 0.0), ("TRAIN.CUTMIX_ALPHA", 0.0),
                         ("TRAIN.STRONG_AUGMENTATION", True),
                         ("TRANSFORMER.DROP_RATE", 0.0), ("TRANSFORMER.ATTENTION_DROP_RATE", 0.0),
                         ("OPTIM.OPTIMIZER", "adamw"), ("OPTIM.LR_POLICY", "cos"), ("OPTIM.HEAD_LR_RATIO", 1.0),
                         ("OPTIM.EMA_UPDATE_PERIOD", 0), ("TEST.WEIGHTS", ""), ("DISTILLATION.ENABLE_INTER", False),
                         ("DISTILLATION.OFFLINE", False), ("DISTILLATION.LOGIT_LOSS", "soft")):
        value = values[key]
        if value != allowed and not (value is None and key.startswith(_T)):
            raise _refuse(key, value, f"fastkd's ViT training supports only {allowed!r} here "
                          "(the reference's configs all use it)")
    for key in ("OPTIM.MOMENTUM", "OPTIM.DAMPENING", "OPTIM.NESTEROV", "OPTIM.STEPS", "OPTIM.LR_MULT",
                "OPTIM.EMA_ALPHA"):
        if key in given:
            notes.append(f"{key}: no effect (AdamW with the cosine policy, EMA off)")

    logit = values["DISTILLATION.ENABLE_LOGIT"]
    online, space, weights = values["DISTILLATION.ONLINE"], values["DISTILLATION.SPACE"], \
        values["DISTILLATION.TEACHER_WEIGHTS"]
    drop_path = values[_T + "DROP_PATH_RATE"] or 0.0
    if isinstance(drop_path, bool) or not isinstance(drop_path, (int, float)):
        raise _refuse(_T + "DROP_PATH_RATE", drop_path, "expected a number in [0, 1)")
    vit: dict[str, Any] = {"drop_path_rate": float(drop_path)}
    if not logit:
        method = "vit_base"
        notes += [f"{key}: no effect without DISTILLATION.ENABLE_LOGIT" for key in sorted(given)
                  if key.startswith(_DISTILLATION_ONLY)]
    else:
        if values["DISTILLATION.TEACHER_MODEL"] != values["MODEL.TYPE"]:
            raise _refuse("DISTILLATION.TEACHER_MODEL", values["DISTILLATION.TEACHER_MODEL"],
                          f"the reference builds the teacher from the student's config; fastkd supports a "
                          f"{values['MODEL.TYPE']} teacher for a {values['MODEL.TYPE']} student")
        vit |= {"logit_weight": float(values["DISTILLATION.LOGIT_WEIGHT"]),
                "temperature": float(values["DISTILLATION.LOGIT_TEMP"])}
        teacher_size = values["DISTILLATION.TEACHER_IMG_SIZE"]
        vit["teacher_img_size"] = None  # the teacher sees the student's input, as at the configs' 224 == IMG_SIZE
        if teacher_size != values["MODEL.IMG_SIZE"]:
            notes.append(f"DISTILLATION.TEACHER_IMG_SIZE {teacher_size}: the teacher runs at MODEL.IMG_SIZE "
                         f"{values['MODEL.IMG_SIZE']} (the reference builds it from the student's config, so "
                         "another size cannot fit it)")
        if online:
            method = "vit_online_kd"
            if space:
                notes.append("DISTILLATION.SPACE: no effect with DISTILLATION.ONLINE True (the reference checks "
                             "ONLINE first)")
        elif space:
            method = "vit_spaced_kd"
            interval = float(values["DISTILLATION.SPACE_INTERVAL"])
            if interval <= 0:
                raise _refuse("DISTILLATION.SPACE_INTERVAL", interval, "spaced KD needs an interval > 0 epochs")
            vit["interval"] = interval
            named = re.search(r"space_(\d+)_(\d+)", Path(source).stem)
            if named and float(f"{named.group(1)}.{named.group(2)}") != interval:
                notes.append(f"warning: {Path(source).name} is named for interval {named.group(1)}.{named.group(2)} "
                             f"but sets DISTILLATION.SPACE_INTERVAL {interval}; running {interval} as the file says")
        else:
            method = "vit_offline_kd"
            if not weights:
                raise _refuse("DISTILLATION.TEACHER_WEIGHTS", weights, "offline KD (ONLINE and SPACE False) loads "
                              "a trained teacher; pass its .pyth or fastkd checkpoint")
        if weights:
            if method == "vit_offline_kd":
                vit["teacher_weights"] = str(weights)
            else:
                notes.append("DISTILLATION.TEACHER_WEIGHTS: no effect in online and spaced KD (the teacher trains)")

    image_size = int(values["MODEL.IMG_SIZE"])
    data = {"dataset": fastkd_dataset, "batch_size": int(values["TRAIN.BATCH_SIZE"]),
            "eval_batch_size": int(values["TEST.BATCH_SIZE"]), "drop_last": True,
            "image_size": None if image_size == 224 else image_size}
    if fastkd_dataset == "tiny_imagenet":
        data["class_order"] = "sorted"
    optim = {"name": "adamw", "lr": float(values["OPTIM.BASE_LR"]), "min_lr": float(values["OPTIM.MIN_LR"]),
             "weight_decay": float(values["OPTIM.WEIGHT_DECAY"]),
             "betas": [float(values["OPTIM.BETA1"]), float(values["OPTIM.BETA2"])], "schedule": "warmup_cosine",
             "warmup_epochs": int(values["OPTIM.WARMUP_EPOCHS"]),
             "warmup_factor": float(values["OPTIM.WARMUP_FACTOR"])}
    raw: dict[str, Any] = {
        "name": Path(source).stem, "method": method, "semantics": "reference", "seed": int(values["RNG_SEED"]),
        "model": {"student": architecture, "teacher": architecture}, "data": data, "optim": optim,
        "train": {"epochs": int(values["OPTIM.MAX_EPOCH"])}, "vit": vit,
    }
    if values["TRAIN.MIXED_PRECISION"]:
        raw["train"]["amp"] = "fp16"  # pycls: torch.cuda.amp autocast (float16) with a GradScaler
    if values["TRAIN.WEIGHTS"]:
        raw["init_from"] = str(values["TRAIN.WEIGHTS"])
    return Translation(raw, notes)


def parse_command_line(argv: list[str]) -> tuple[str, list[str]]:
    """run_net.py's ``--mode train --cfg FILE [KEY VALUE ...]`` -> (cfg path, overrides)."""
    mode, cfg, rest = None, None, []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, inline = token.partition("=")
        if name in ("--mode", "--cfg"):
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise CompatError(f"run_net: {name} needs a value")
            mode, cfg = (value, cfg) if name == "--mode" else (mode, value)
        elif token.startswith("-") and not (len(rest) % 2 and _is_number(token)):  # `RNG_SEED -1`: a value
            raise CompatError(f"run_net: unknown flag {token}; run_net takes --mode train --cfg FILE [KEY VALUE ...]")
        else:
            rest.append(token)
        i += 1
    if mode != "train":
        raise CompatError(f"run_net: --mode {mode or '(missing)'}: fastkd runs --mode train (evaluate a run with "
                          "`fastkd eval`)")
    if cfg is None:
        raise CompatError("run_net: --cfg FILE.yaml is required")
    return cfg, rest


def translate_command_line(argv: list[str]) -> Translation:
    """A run_net.py command line (without fastkd's own flags) -> the fastkd config dict and notes."""
    cfg, overrides = parse_command_line(argv)
    given = read_pycls_config(cfg, overrides)
    return translate(DEFAULTS | given, set(given), cfg)


# ------------------------------------------------------------------------------ the paper's ViT experiments
_WRITTEN_INTERVALS = {("pit_ti", "s1.5"): 1.0, ("pit_ti", "s2.0"): 1.0}
"""The reference's PiT space_1_5 / space_2_0 files set SPACE_INTERVAL 1.0; the paper configs keep what they say."""
_REFERENCE_FILES = {"deit_tiny": ("deit", "deit-ti"), "pit_ti": ("pit", "pit-ti"), "pvt_tiny": ("pvt", "pvt-ti"),
                    "pvt_v2_b0": ("pvtv2", "pvtv2-b0"), "t2t_vit_7": ("t2t", "t2t-7"), "t2t_vit_14": ("t2t", "t2t-14"),
                    "convit_tiny": ("convit", "convit-ti"), "cvt_13": ("cvt", "cvt-13")}


def reference_file(dataset: str, architecture: str, variant: str) -> str:
    """The reference's config path of an experiment, e.g. vit/configs/deit/tinyimagenet/deit-ti_t200_space_0_5.yaml."""
    folder, stem = _REFERENCE_FILES[architecture]
    suffix = variant if not variant.startswith("s") else "space_" + variant[1:].replace(".", "_")
    if dataset == "tiny_imagenet":
        return f"vit/configs/{folder}/tinyimagenet/{stem}_t200_{suffix}.yaml"
    return f"vit/configs/{folder}/{stem}_c100_{suffix}.yaml"


def paper_reference_values(dataset: str, architecture: str, variant: str) -> dict[str, Any]:
    """The pycls config of one paper experiment: the reference's defaults plus what its YAML file sets."""
    model_type = next(t for t, archs in MODEL_TYPES.items() if architecture in archs)
    values = DEFAULTS | ARCHITECTURES[architecture] | {
        "MODEL.TYPE": model_type, "MODEL.NUM_CLASSES": DATASETS[dataset][1], _T + "DROP_RATE": 0.0,
        _T + "DROP_PATH_RATE": 0.1, _T + "ATTENTION_DROP_RATE": 0.0, "OPTIM.OPTIMIZER": "adamw",
        "OPTIM.BASE_LR": 5e-4, "OPTIM.MIN_LR": 5e-6, "OPTIM.MAX_EPOCH": 300, "OPTIM.WEIGHT_DECAY": 0.05,
        "OPTIM.WARMUP_FACTOR": 0.001, "OPTIM.WARMUP_EPOCHS": 20, "TRAIN.DATASET": dataset, "TEST.DATASET": dataset}
    if variant != "base":
        values |= {"DISTILLATION.ENABLE_LOGIT": True, "DISTILLATION.TEACHER_MODEL": model_type,
                   "DISTILLATION.TEACHER_IMG_SIZE": 224}
    if variant == "online":
        values["DISTILLATION.ONLINE"] = True
    elif variant == "offline":
        values["DISTILLATION.TEACHER_WEIGHTS"] = f"runs/vit_{dataset}_{architecture}_base/best.pt"
    elif variant != "base":
        interval = _WRITTEN_INTERVALS.get((architecture, variant), float(variant[1:]))
        values |= {"DISTILLATION.SPACE": True, "DISTILLATION.SPACE_INTERVAL": interval}
    return values


def render_paper_config(dataset: str, architecture: str, variant: str) -> str:
    """configs/paper/vit/<dataset>/<architecture>_<variant>.yaml: the run_net mapping of the experiment."""
    translation = translate(paper_reference_values(dataset, architecture, variant), set(), f"{variant}.yaml")
    translation.raw["name"] = f"vit_{dataset}_{architecture}_{variant}"
    translation.raw["data"]["root"] = None
    config = validate(translation.raw, f"paper config {dataset}/{architecture}_{variant}")
    header = [f"# ViT paper experiment: {architecture} {variant} on {dataset}; reference config "
              f"{reference_file(dataset, architecture, variant)}.",
              "# Generated by python -m fastkd.reproduce.experiments: the `fastkd compat run_net` mapping of that file.",
              f"# Train: fastkd train configs/paper/vit/{dataset}/{architecture}_{variant}.yaml data.root=DIR"]
    if (architecture, variant) in _WRITTEN_INTERVALS:
        header.append(f"# Note: the reference's file for {variant} sets SPACE_INTERVAL "
                      f"{_WRITTEN_INTERVALS[architecture, variant]}; kept as written.")
    return "\n".join(header) + "\n" + dump_config(config)
