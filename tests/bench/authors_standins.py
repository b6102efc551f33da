"""Stand-ins for the authors' repositories (SunGL001/Spaced-KD, SunGL001/spacing_generalization), written for the
tests of `fastkd bench --reference-repo`: the same folder layout, entry points and flags, and every pattern the shim
must handle in the real scripts (hard-coded absolute data and result paths, `wandb.init/log/finish` and
`wandb.run.get_url()`, unconditional `.cuda()` calls, `torchvision.datasets.CIFAR100(..., download=True)`, DataLoaders
with workers, relative checkpoint/wandb/work_dirs folders, pycls' `./data`, `torch.cuda.current_device()` and
`torch.cuda.synchronize()`, RandAugment's posterize to 0 bits), with one-layer models. No authors' code is used."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

TINY_NET = """
import torch.nn as nn


class TinyNet(nn.Module):
    '''(feature, logits), as the authors' online-KD nets return them.'''

    def __init__(self, num_classes=100):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4, num_classes)
        self.feature_size = 4

    def forward(self, x):
        feature = self.conv(x).mean((2, 3))
        return feature, self.fc(feature)
"""

CIFAR_LOADERS = """
import torchvision
import torchvision.transforms as transforms
from torch.utils.data import DataLoader


def get_training_dataloader(dataset, batch_size=16, num_workers=2, shuffle=True):
    data = torchvision.datasets.CIFAR100(root='/data/datasets/CIFAR', train=True, download=True,
                                         transform=transforms.ToTensor())
    return DataLoader(data, shuffle=shuffle, num_workers=num_workers, batch_size=batch_size)


def get_test_dataloader(dataset, batch_size=16, num_workers=2, shuffle=False):
    data = torchvision.datasets.CIFAR100(root='/data/datasets/CIFAR', train=False, download=True,
                                         transform=transforms.ToTensor())
    return DataLoader(data, shuffle=shuffle, num_workers=num_workers, batch_size=batch_size)
"""

TRAIN_SPACE = """
import argparse
import os

parser = argparse.ArgumentParser()
for flag, kind, default in (('-net_teacher', str, 'resnet18'), ('-net_student', str, 'resnet18'), ('-b', int, 128),
                            ('-lr', float, 0.1), ('-epoch', int, 80), ('-temp', float, 3.0), ('-alpha', float, 0.3),
                            ('-beta', float, 0.03), ('-interval_rate', float, 1.0), ('-dataset', str, 'cifar100'),
                            ('-gpu_ids', str, '0,1'), ('-wandb_entity', str, 'none'),
                            ('-wandb_project', str, 'spaced_distillation')):
    if flag in {FLAGS}:
        parser.add_argument(flag, type=kind, default=default)
parser.add_argument('-gpu', action='store_true', default=True)
args = parser.parse_args()

import torch
import torch.nn.functional as F
import wandb
from models.nets import TinyNet
from utils import get_training_dataloader, get_test_dataloader

os.environ['CUDA_VISIBLE_DEVICES'] = args.gpu_ids
training_loader = get_training_dataloader(args.dataset, batch_size=args.b, num_workers=2)
test_loader = get_test_dataloader(args.dataset, batch_size=args.b, num_workers=2)
teacher, student = TinyNet().cuda(), TinyNet().cuda()
optimizer_teacher = torch.optim.SGD(teacher.parameters(), lr=args.lr, momentum=0.9)
optimizer_student = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9)
checkpoint_path = os.path.join('./checkpoints', args.net_teacher + '_' + args.net_student)
os.makedirs(checkpoint_path)
wandb.init(dir='./wandb_SKD', entity=args.wandb_entity, project=args.wandb_project, name='run', config=args)
print('Wandb URL:', wandb.run.get_url())
interval = int(len(training_loader) * args.interval_rate)
buffer = []
for epoch in range(1, args.epoch + 1):
    for batch_index, (images, labels) in enumerate(training_loader):
        n_iter = (epoch - 1) * len(training_loader) + batch_index + 1
        images, labels = images.cuda(), labels.cuda()
        buffer.append((images.cpu(), labels.cpu()))
        optimizer_teacher.zero_grad()
        loss_teacher = F.cross_entropy(teacher(images)[1], labels)
        loss_teacher.backward()
        optimizer_teacher.step()
        if interval == 0 or n_iter % interval == 0:
            for t_images, t_labels in buffer:
                with torch.no_grad():
                    _, pred_teacher = teacher(t_images.cuda())
                optimizer_student.zero_grad()
                _, pred_student = student(t_images.cuda())
                loss = F.cross_entropy(pred_student, t_labels.cuda()) + F.kl_div(
                    F.log_softmax(pred_student, 1), F.softmax(pred_teacher, 1), reduction='batchmean')
                loss.backward()
                optimizer_student.step()
                wandb.log({'Train/student': loss.item()}, commit=False)
            buffer = []
        wandb.log({'Train/teacher': loss_teacher.item()}, commit=True)
    for images, labels in test_loader:
        student(images.cuda())
    torch.save(student.state_dict(), os.path.join(checkpoint_path, 'student.pth'))
wandb.finish()
"""

SELF_KD = """
import argparse
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as transforms
import wandb
from nets import TinyNet

parser = argparse.ArgumentParser()
parser.add_argument('--model', default='resnet18', type=str)
parser.add_argument('--dataset', default='cifar100', type=str)
parser.add_argument('--epoch', default=80, type=int)
parser.add_argument('--dataset_path', default='data', type=str)
parser.add_argument('--batchsize', default=128, type=int)
parser.add_argument('--init_lr', default=0.01, type=float)
parser.add_argument('--interval_rate', default=1.0, type=float)
parser.add_argument('--gpu_ids', default='0,1', type=str)
args = parser.parse_args()
os.environ['CUDA_VISIBLE_DEVICES'] = args.gpu_ids
device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
trainset = torchvision.datasets.CIFAR100(root=args.dataset_path, train=True, download=True,
                                         transform=transforms.ToTensor())
trainloader = torch.utils.data.DataLoader(trainset, batch_size=args.batchsize, shuffle=True, num_workers=2)
net = TinyNet().to(device)
net.adaptation_layers = nn.ModuleList([nn.Linear(4, 4)])
net.adaptation_layers.cuda()
optimizer = torch.optim.SGD(net.parameters(), lr=args.init_lr, momentum=0.9)
interval = int(len(trainloader) * args.interval_rate)
wandb.init(dir='./wandb', project='SKD', name='self', config=args)
buffer = []
for epoch in range(args.epoch):
    for i, (inputs, labels) in enumerate(trainloader):
        n_iter = (epoch - 1) * len(trainloader) + i + 1
        buffer.append((inputs, labels))
        inputs, labels = inputs.to(device), labels.to(device)
        loss = F.cross_entropy(net(inputs)[1], labels)
        if interval == 0 or n_iter % interval == 0:
            for t_inputs, t_labels in buffer:
                loss = loss + F.cross_entropy(net(t_inputs.to(device))[1], t_labels.to(device))
            buffer = []
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        wandb.log({'Train/loss': loss.item()})
wandb.finish()
"""

RUN_NET = """
import argparse
import os
import time

import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as transforms
import yaml
from PIL import ImageOps
from nets import TinyNet

parser = argparse.ArgumentParser()
parser.add_argument('--mode', choices=['train', 'test', 'time'], required=True)
parser.add_argument('--cfg', required=True)
parser.add_argument('opts', nargs=argparse.REMAINDER)
args = parser.parse_args()
cfg = yaml.safe_load(open(args.cfg))
for key, value in zip(args.opts[::2], args.opts[1::2]):
    section, _, name = key.rpartition('.')
    (cfg.setdefault(section, {}) if section else cfg)[name] = yaml.safe_load(value)
out_dir = os.path.join('work_dirs', os.path.basename(args.cfg) + time.strftime('-%H-%M-%S'))
os.makedirs(out_dir)
if not os.path.exists('./data'):
    os.makedirs('./data')
# timm's increasing RandAugment reaches posterize to 0 bits, which new Pillow refuses
augment = transforms.Compose([transforms.Lambda(lambda image: ImageOps.posterize(image, 0)), transforms.ToTensor()])
dataset = torchvision.datasets.CIFAR100(root='./data', train=True, download=True, transform=augment)
batch = cfg['TRAIN']['BATCH_SIZE'] // cfg['NUM_GPUS']
loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=2, drop_last=True)
space_loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=2, drop_last=True)
device = torch.cuda.current_device()
teacher, student = TinyNet().cuda(device=device), TinyNet().cuda(device=device)
optimizer = torch.optim.AdamW(list(teacher.parameters()) + list(student.parameters()))
space_counter = 0
with open(os.path.join(out_dir, 'stdout.log'), 'w') as log:
    for epoch in range(cfg['OPTIM']['MAX_EPOCH']):
        for inputs, labels in loader:
            inputs, labels = inputs.cuda(), labels.cuda(non_blocking=True)
            space_counter += 1
            optimizer.zero_grad()
            F.cross_entropy(teacher(inputs)[1], labels).backward()
            optimizer.step()
            if space_counter >= len(loader) * cfg['DISTILLATION']['SPACE_INTERVAL']:
                for done, (space_inputs, space_labels) in enumerate(space_loader, 1):
                    optimizer.zero_grad()
                    F.cross_entropy(student(space_inputs.cuda())[1], space_labels.cuda()).backward()
                    optimizer.step()
                    if done >= space_counter:
                        break
                space_counter = 0
            torch.cuda.synchronize()
            log.write('iteration\\n')
"""

DEIT_CONFIG = """\
MODEL: {TYPE: DeiT, NUM_CLASSES: 100}
TRANSFORMER: {PATCH_SIZE: 16, HIDDEN_DIM: 192, DEPTH: 12, NUM_HEADS: 3, MLP_RATIO: 4, DROP_RATE: 0.0,
              DROP_PATH_RATE: 0.1, ATTENTION_DROP_RATE: 0.0}
DISTILLATION: {ENABLE_INTER: False, ENABLE_LOGIT: True, LOGIT_LOSS: soft, LOGIT_TEMP: 1.0, LOGIT_WEIGHT: 0.5,
               TEACHER_MODEL: DeiT, TEACHER_IMG_SIZE: 224, ONLINE: False, SPACE: True, SPACE_INTERVAL: 1.0}
OPTIM: {OPTIMIZER: adamw, BASE_LR: 5.0e-4, MIN_LR: 5.0e-6, LR_POLICY: cos, MAX_EPOCH: 300, WEIGHT_DECAY: 0.05,
        WARMUP_FACTOR: 0.001, WARMUP_EPOCHS: 20}
TRAIN: {DATASET: cifar100, SPLIT: train, BATCH_SIZE: 128}
TEST: {DATASET: cifar100, SPLIT: test, BATCH_SIZE: 200}
NUM_GPUS: 4
PREC_TIME: {NUM_ITER: 30}
"""

TRAIN_EMA = """
import argparse
import copy
import os

import torch
import torch.nn as nn
import wandb
from models.resnet import TinyNet
from utils import get_training_dataloader, get_test_dataloader

parser = argparse.ArgumentParser()
parser.add_argument('-net', type=str, required=True)
parser.add_argument('-gpu', action='store_true', default=True)
parser.add_argument('-b', type=int, default=128)
parser.add_argument('-lr', type=float, default=0.01)
parser.add_argument('-epoch', type=int, default=80)
parser.add_argument('-alpha', type=float, default=0.999)
parser.add_argument('-interval', type=float, default=1)
parser.add_argument('-dataset', default='cifar100', type=str)
parser.add_argument('-gpu_ids', default='0', type=str)
args = parser.parse_args()
os.environ['CUDA_VISIBLE_DEVICES'] = args.gpu_ids
training_loader = get_training_dataloader(args.dataset, batch_size=args.b, num_workers=2)
test_loader = get_test_dataloader(args.dataset, batch_size=args.b, num_workers=2)
criterion = nn.CrossEntropyLoss().cuda()
model = TinyNet().cuda()
ema_model = copy.deepcopy(model)
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
test_id = 'ema_' + args.dataset + '_' + args.net
wandb.init(dir='/data/sunguanglong/results_spcaed_distillation/wandb_SKD', project='SKD_V2', name=test_id)
print('Wandb URL:', wandb.run.get_url())
results = '/data/sunguanglong/results_spcaed_distillation/fig4_ema'
t_interval, count = max(1, int(args.interval * len(training_loader))), 0
for epoch in range(args.epoch):
    for images, labels in training_loader:
        count += 1
        images, labels = images.cuda(), labels.cuda()
        optimizer.zero_grad()
        loss = criterion(model(images)[1], labels)
        loss.backward()
        optimizer.step()
        wandb.log({'train_loss': loss.item()}, commit=True)
        if count == t_interval:
            with torch.no_grad():
                for ema_param, param in zip(ema_model.parameters(), model.parameters()):
                    ema_param.mul_(args.alpha).add_(param, alpha=1 - args.alpha)
            count = 0
            if not os.path.exists(results):  # the authors save at the epoch's end; here once, within the cap
                os.makedirs(results)
                torch.save({'model': model.state_dict()}, os.path.join(results, test_id + '.pkl'))
wandb.finish()
"""

DROPOUT = """
import argparse

import numpy as np
import torch
import torch.backends.cudnn as cudnn
import torch.nn as nn
import wandb
from model.resnet import TinyNet
from utils import get_training_dataloader, get_test_dataloader

parser = argparse.ArgumentParser()
parser.add_argument('--dataset', '-d', default='cifar10')
parser.add_argument('--model', '-a', default='resnet18')
parser.add_argument('--batch_size', type=int, default=128)
parser.add_argument('--epochs', type=int, default=80)
parser.add_argument('--learning_rate', type=float, default=0.01)
parser.add_argument('--no-cuda', action='store_true', default=False)
parser.add_argument('--seed', type=int, default=0)
parser.add_argument('--drop', type=float, default=0.3)
parser.add_argument('--drop_method', type=str, default='MaxDropout',
                    choices=['StandardDropout', 'MaxDropout', 'SpacedDropout', 'MaxSpacedDropout'])
parser.add_argument('--space', type=float, default=10.0)
args = parser.parse_args()
torch.manual_seed(args.seed)
cudnn.benchmark = True
train_loader = get_training_dataloader(args.dataset, batch_size=args.batch_size, num_workers=2)
test_loader = get_test_dataloader(args.dataset, batch_size=args.batch_size, num_workers=2)
cnn = TinyNet().cuda()
criterion = nn.CrossEntropyLoss().cuda()
optimizer = torch.optim.SGD(cnn.parameters(), lr=args.learning_rate, momentum=0.9, nesterov=True)
wandb.init(dir='/data/sunguanglong/results_spcaed_distillation/wandb_SKD', project='SKD_V2', name='dropout')
count, length = 0, len(train_loader)
for epoch in range(args.epochs):
    for images, labels in train_loader:
        rate = args.drop * np.abs(np.sin(np.pi / (args.space * length) * count))
        count += 1
        optimizer.zero_grad()
        feature, _ = cnn(images.cuda())
        loss = criterion(cnn.fc(nn.functional.dropout(feature, float(rate))), labels.cuda())
        loss.backward()
        optimizer.step()
        wandb.log({'train_loss': loss.item()})
wandb.finish()
"""

ONLINE_KD_FLAGS = ("-net_teacher", "-net_student", "-b", "-lr", "-epoch", "-temp", "-alpha", "-beta",
                   "-interval_rate", "-dataset", "-gpu_ids", "-wandb_entity", "-wandb_project")


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def _commit(root: Path) -> str:
    git = ["git", "-C", str(root), "-c", "user.name=standin", "-c", "user.email=standin@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "stand-in"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def spaced_kd(root: Path, online_kd_flags: tuple[str, ...] = ONLINE_KD_FLAGS) -> str:
    """A stand-in SunGL001/Spaced-KD clone at `root` (its train_space.py accepts `online_kd_flags`); its commit."""
    _write(root, {
        "online_KD/train_space.py": TRAIN_SPACE.replace("{FLAGS}", repr(set(online_kd_flags))),
        "online_KD/utils.py": CIFAR_LOADERS, "online_KD/models/__init__.py": "", "online_KD/models/nets.py": TINY_NET,
        "self_KD/train.py": SELF_KD, "self_KD/nets.py": TINY_NET,
        "vit/run_net.py": RUN_NET, "vit/nets.py": TINY_NET,
        "vit/configs/deit/deit-ti_c100_space_1_0.yaml": DEIT_CONFIG,
    })
    return _commit(root)


def spacing_generalization(root: Path) -> str:
    """A stand-in SunGL001/spacing_generalization clone at `root`; its commit."""
    _write(root, {
        "online_KD/train_EMA.py": TRAIN_EMA, "online_KD/utils.py": CIFAR_LOADERS,
        "online_KD/models/__init__.py": "", "online_KD/models/resnet.py": TINY_NET,
        "dropout/train.py": DROPOUT, "dropout/utils.py": CIFAR_LOADERS,
        "dropout/model/__init__.py": "", "dropout/model/resnet.py": TINY_NET,
        "self_KD/train.py": SELF_KD, "self_KD/nets.py": TINY_NET,
    })
    return _commit(root)
