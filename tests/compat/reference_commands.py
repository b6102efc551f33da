"""The seeds' documented command lines, verbatim (README.md of both repositories, online_KD/run.sh, self_KD/self.sh),
and a shell-like splitter that turns one into the argv the reference script receives."""

from __future__ import annotations

import shlex

# (source, fastkd compat script, the command exactly as documented)
COMMANDS: list[tuple[str, str, str]] = [
    ("spacing_generalization README: StandardDropout", "dropout", """
  python ./train.py \\
    --gpu_ids  '0' \\
    --model 'resnet18' \\
    --drop_method 'StandardDropout' \\
    --epochs 80 \\
    --drop 0.5 \\
    --dataset 'cifar100' \\
    --space 0.0  &\\
"""),
    ("spacing_generalization README: SpacedDropout", "dropout", """
  python ./train.py \\
    --gpu_ids  '0' \\
    --model 'resnet18' \\
    --drop_method 'SpacedDropout' \\
    --epochs 80 \\
    --drop 0.5 \\
    --dataset 'cifar100' \\
    --space 1.0  &\\
"""),
    ("spacing_generalization README: EMA every step", "ema", """
  python ./train_EMA.py \\
    -gpu_ids  '0' \\
    -net 'resnet18' \\
    -dataset 'cifar100' \\
    -interval 0.0 \\
    -alpha 0.99 \\
    -epoch 80 \\
    -lr 0.01 \\
    -gpu  &\\
"""),
    ("spacing_generalization README: Spaced EMA", "ema", """
python ./train_EMA.py \\
    -gpu_ids  '0' \\
    -net 'resnet18' \\
    -dataset 'cifar100' \\
    -interval 0.1 \\
    -alpha 0.99 \\
    -epoch 80 \\
    -lr 0.01 \\
    -gpu  &\\
"""),
    ("spacing_generalization README: Spaced online KD", "train_kd", """
    python ./train_space.py \\
        -gpu_ids  '0' \\
        -wandb_entity [your_wandb_entity] \\
        -wandb_project [your_wandb_project] \\
        -net_teacher 'resnet18' \\
        -net_student 'resnet18' \\
        -alpha 0.3 \\
        -temp 3.0 \\
        -lr 0.01 \\
        -interval_rate 1.5 \\
        -b 128 \\
        -gpu \\
        -dataset 'cifar100'
"""),
    ("spacing_generalization README: Spaced self KD", "self_kd", """
    python ./train.py \\
    --gpu_ids  '0' \\
    --wandb_entity [your_wandb_entity] \\
    --wandb_project SKD \\
    --model 'resnet18' \\
    --interval_rate 4.0 \\
    --dataset 'cifar100'
"""),
    ("Spaced-KD README: Spaced online KD", "train_space", """
    python ./train_space.py \\
        -gpu_ids  '0' \\
        -wandb_entity [your_wandb_entity] \\
        -wandb_project [your_wandb_project] \\
        -net_teacher 'resnet18' \\
        -net_student 'resnet18' \\
        -alpha 0.3 \\
        -temp 3.0 \\
        -lr 0.01 \\
        -interval_rate 1.5 \\
        -b 128 \\
        -gpu \\
        -dataset 'cifar100'
"""),
    ("Spaced-KD README: Spaced self KD", "self_kd", """
    python ./train.py \\
    --gpu_ids  '0' \\
    --wandb_entity [your_wandb_entity] \\
    --wandb_project SKD \\
    --model 'resnet18' \\
    --interval_rate 4.0 \\
    --dataset 'cifar100' &\\
"""),
    ("online_KD/run.sh: online KD", "train_space", """
python ./train_space.py \\
    -gpu_ids  '0,1' \\
    -wandb_entity [your_wandb_entity] \\
    -wandb_project [your_wandb_project] \\
    -net_teacher 'resnet18' \\
    -net_student 'resnet18' \\
    -downsample_factor 1.0 \\
    -alpha 0.3 \\
    -temp 3.0 \\
    -lr 0.01 \\
    -interval_rate 0.0 \\
    -b 128 \\
    -gpu \\
    -feature_loss 'dist' \\
    -dataset 'cifar100' &\\
"""),
    ("online_KD/run.sh: Spaced online KD", "train_space", """
python ./train_space.py \\
    -gpu_ids  '0,1' \\
    -wandb_entity [your_wandb_entity] \\
    -wandb_project [your_wandb_project] \\
    -net_teacher 'resnet18' \\
    -net_student 'resnet18' \\
    -downsample_factor 1.0 \\
    -alpha 0.3 \\
    -temp 3.0 \\
    -lr 0.01 \\
    -interval_rate 1.5 \\
    -b 128 \\
    -gpu \\
    -feature_loss 'dist' \\
    -dataset 'cifar100'
"""),
    ("self_KD/self.sh: self KD", "self_kd", """
python ./train.py \\
    --gpu_ids  '0,1' \\
    --wandb_entity [your_wandb_entity] \\
    --wandb_project SKD \\
    --model 'resnet18' \\
    --interval_rate 0.0 \\
    --dataset 'cifar100' &\\
"""),
    ("self_KD/self.sh: Spaced self KD", "self_kd", """
python ./train.py \\
    --gpu_ids  '0,1' \\
    --wandb_entity [your_wandb_entity] \\
    --wandb_project SKD \\
    --model 'resnet18' \\
    --interval_rate 4.0 \\
    --dataset 'cifar100' \n"""),
]


def reference_argv(command: str) -> list[str]:
    """What the shell hands the script: join continuation lines, split, stop at `&`, drop `python ./x.py`."""
    tokens = shlex.split(command.replace("\\\n", " "))
    if "&" in tokens:
        tokens = tokens[:tokens.index("&")]
    assert tokens[0] == "python" and tokens[1].endswith(".py"), tokens[:2]
    return tokens[2:]
