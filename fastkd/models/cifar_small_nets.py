"""The online-KD reference's other CIFAR networks (its ``models/`` folder): MobileNet, MobileNetV2, ShuffleNet,
ShuffleNetV2 and the small ViT that ``models/nets.py`` builds for ``-net_* vit`` on CIFAR-100.

Each forward returns (pooled feature, logits) and each model has ``feature_size``, like the CIFAR ResNets, so the
teacher/student wrappers of fastkd.models.cifar_resnet take them unchanged. Module names, widths, strides, groups,
biases, activations and construction order follow the reference, so state_dict keys and shapes equal its
checkpoints' (minus DataParallel's ``module.``; maps in fastkd.reference.keys). Init is PyTorch's default, as
there, drawn in the reference's order, so a build after the same ``torch.manual_seed`` gives the same weights. Key
layout:
  mobilenet     ``stem.0.{conv,bn}``, ``stem.1`` and ``conv{1..4}.<i>``: ``{depthwise,pointwise}.{0,1}``, ``fc``
  mobilenetv2   ``pre.{0,1}``, ``stage1.residual.<i>``, ``stage{2..6}.<block>.residual.<i>``, ``stage7.residual.<i>``,
                ``conv1.{0,1}``, ``conv2`` (a 1x1 conv classifier)
  shufflenet    ``conv1.{conv,bn}``, ``stage{2..4}.<unit>.{bottlneck.0.pointwise,depthwise.depthwise,
                expand.pointwise}.{0,1}`` (the reference's spelling ``bottlneck``), ``fc``
  shufflenetv2  ``pre.{0,1}``, ``stage{2..4}.<unit>.{residual,shortcut}.<i>``, ``conv5.{0,1}``, ``fc``
  vit_cifar     ``pos_embedding``, ``cls_token``, ``to_patch_embedding.{1,2,3}``,
                ``transformer.layers.<i>.0.{norm,to_qkv,to_out.0}``, ``transformer.layers.<i>.1.net.{0,1,4}``,
                ``transformer.norm``, ``mlp_head``
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model


# ----------------------------------------------------------------------------------------------- MobileNet
class ConvBNReLU(nn.Module):
    """Conv + BN + ReLU under the names ``conv``/``bn`` (the reference's ``BasicConv2d``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **conv_kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class DepthSeparableConv(nn.Module):
    """3x3 depthwise conv (no bias) + BN + ReLU, then a 1x1 pointwise conv *with* bias + BN + ReLU, as the
    reference passes its keyword arguments to the depthwise conv only."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.depthwise = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
        )
        self.pointwise = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNet(nn.Module):
    """MobileNet v1 for 32x32 inputs: stride-1 stem, four stride-2 stages, widths 32..1024 times ``alpha``."""

    def __init__(self, num_classes: int = 100, alpha: float = 1.0):
        super().__init__()
        w = [int(c * alpha) for c in (32, 64, 128, 256, 512, 1024)]
        self.stem = nn.Sequential(ConvBNReLU(3, w[0], 3, padding=1, bias=False), DepthSeparableConv(w[0], w[1]))
        self.conv1 = nn.Sequential(DepthSeparableConv(w[1], w[2], 2), DepthSeparableConv(w[2], w[2]))
        self.conv2 = nn.Sequential(DepthSeparableConv(w[2], w[3], 2), DepthSeparableConv(w[3], w[3]))
        self.conv3 = nn.Sequential(DepthSeparableConv(w[3], w[4], 2), *(DepthSeparableConv(w[4], w[4])
                                                                        for _ in range(5)))
        self.conv4 = nn.Sequential(DepthSeparableConv(w[4], w[5], 2), DepthSeparableConv(w[5], w[5]))
        self.fc = nn.Linear(w[5], num_classes)
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.feature_size = w[5]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv4(self.conv3(self.conv2(self.conv1(self.stem(x)))))
        feature = torch.flatten(self.avg(x), 1)
        return feature, self.fc(feature)


# --------------------------------------------------------------------------------------------- MobileNetV2
class LinearBottleneck(nn.Module):
    """Inverted residual: 1x1 expand by ``t``, 3x3 depthwise, 1x1 linear projection; every conv has a bias, ReLU6.
    The input is added when the shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, t: int = 6):
        super().__init__()
        hidden = in_channels * t
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_channels, 1), nn.BatchNorm2d(out_channels),
        )
        self.keeps_shape = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.residual(x)
        return residual + x if self.keeps_shape else residual


class MobileNetV2(nn.Module):
    """MobileNetV2 for 32x32 inputs. The stem is the reference's 1x1 conv with padding 1 (so 32x32 -> 34x34); the
    classifier is a 1x1 conv on the pooled 1280-d feature."""

    feature_size = 1280

    def __init__(self, num_classes: int = 100):
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 32, 1, padding=1), nn.BatchNorm2d(32), nn.ReLU6(inplace=True))
        self.stage1 = LinearBottleneck(32, 16, 1, 1)
        self.stage2 = self._make_stage(2, 16, 24, 2, 6)
        self.stage3 = self._make_stage(3, 24, 32, 2, 6)
        self.stage4 = self._make_stage(4, 32, 64, 2, 6)
        self.stage5 = self._make_stage(3, 64, 96, 1, 6)
        self.stage6 = self._make_stage(3, 96, 160, 1, 6)
        self.stage7 = LinearBottleneck(160, 320, 1, 6)
        self.conv1 = nn.Sequential(nn.Conv2d(320, self.feature_size, 1), nn.BatchNorm2d(self.feature_size),
                                   nn.ReLU6(inplace=True))
        self.conv2 = nn.Conv2d(self.feature_size, num_classes, 1)

    @staticmethod
    def _make_stage(repeat: int, in_channels: int, out_channels: int, stride: int, t: int) -> nn.Sequential:
        return nn.Sequential(LinearBottleneck(in_channels, out_channels, stride, t),
                             *(LinearBottleneck(out_channels, out_channels, 1, t) for _ in range(repeat - 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pre(x)
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4, self.stage5, self.stage6, self.stage7):
            x = stage(x)
        pooled = nn.functional.adaptive_avg_pool2d(self.conv1(x), 1)
        return torch.flatten(pooled, 1), torch.flatten(self.conv2(pooled), 1)


# ---------------------------------------------------------------------------------------------- ShuffleNet
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, g*n, H, W) -> view as (B, g, n, H, W), swap g and n, flatten back."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2).contiguous()
    return x.view(batch, channels, height, width)


class ConvBN(nn.Module):
    """Conv (with bias) + BN inside a Sequential named ``attribute`` (the reference's ``PointwiseConv2d`` is
    ``pointwise.{0,1}``, its ``DepthwiseConv2d`` is ``depthwise.{0,1}``)."""

    def __init__(self, attribute: str, in_channels: int, out_channels: int, kernel_size: int, **conv_kwargs):
        super().__init__()
        self.attribute = attribute
        self.add_module(attribute, nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, **conv_kwargs),
                                                 nn.BatchNorm2d(out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.attribute)(x)


class ShuffleNetUnit(nn.Module):
    """Grouped 1x1 bottleneck (out/4 channels) + ReLU, channel shuffle, 3x3 depthwise, grouped 1x1 expand; added to
    the input, or, when the shape changes, concatenated after a 3x3/2 average pool of the input; ReLU.

    The first 1x1 is grouped in stage 2 too: the reference's stage-2 branch would rebuild the same grouped conv,
    and never runs (its stage argument is shadowed by a list), so it neither changes the layout nor draws weights.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int):
        super().__init__()
        bottleneck = out_channels // 4
        self.concatenates = stride != 1 or in_channels != out_channels
        self.groups = groups
        self.bottlneck = nn.Sequential(ConvBN("pointwise", in_channels, bottleneck, 1, groups=groups),
                                       nn.ReLU(inplace=True))
        self.depthwise = ConvBN("depthwise", bottleneck, bottleneck, 3, groups=bottleneck, stride=stride, padding=1)
        self.expand = ConvBN("pointwise", bottleneck, out_channels, 1, groups=groups)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if self.concatenates:
            # Rebuilt as in the reference (the first expand is drawn, then replaced), so a seeded init matches.
            self.shortcut = nn.AvgPool2d(3, stride=2, padding=1)
            self.expand = ConvBN("pointwise", bottleneck, out_channels - in_channels, 1, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        shuffled = self.expand(self.depthwise(channel_shuffle(self.bottlneck(x), self.groups)))
        merged = torch.cat([shortcut, shuffled], dim=1) if self.concatenates else shortcut + shuffled
        return self.relu(merged)


SHUFFLENET_WIDTHS = {1: (24, 144, 288, 567), 2: (24, 200, 400, 800), 3: (24, 240, 480, 960),
                     4: (24, 272, 544, 1088), 8: (24, 384, 768, 1536)}
"""Stage widths per group count; the reference builds groups=3 with [4, 8, 4] units."""


class ShuffleNet(nn.Module):
    """ShuffleNet v1 for 32x32 inputs: stride-1 3x3 stem (conv with bias), three stride-2 stages."""

    def __init__(self, num_blocks: tuple[int, int, int] = (4, 8, 4), num_classes: int = 100, groups: int = 3):
        super().__init__()
        widths = SHUFFLENET_WIDTHS[groups]
        self.conv1 = ConvBNReLU(3, widths[0], 3, padding=1, stride=1)
        self._in_channels = widths[0]
        self.stage2 = self._make_stage(num_blocks[0], widths[1], groups)
        self.stage3 = self._make_stage(num_blocks[1], widths[2], groups)
        self.stage4 = self._make_stage(num_blocks[2], widths[3], groups)
        self.avg = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)
        self.feature_size = widths[3]

    def _make_stage(self, num_units: int, out_channels: int, groups: int) -> nn.Sequential:
        units = []
        for stride in [2] + [1] * (num_units - 1):
            units.append(ShuffleNetUnit(self._in_channels, out_channels, stride, groups))
            self._in_channels = out_channels
        return nn.Sequential(*units)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stage4(self.stage3(self.stage2(self.conv1(x))))
        feature = torch.flatten(self.avg(x), 1)
        return feature, self.fc(feature)


# -------------------------------------------------------------------------------------------- ShuffleNetV2
class ShuffleUnitV2(nn.Module):
    """ShuffleNetV2 unit. Shape kept: split the channels in half, the second half goes through 1x1-dw3x3-1x1, the
    first passes; otherwise both branches see the whole input (the shortcut becomes dw3x3-1x1). Every conv has a
    bias. Concatenate (shortcut first) and shuffle with 2 groups."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.splits = stride == 1 and in_channels == out_channels
        half_out = out_channels // 2
        if not self.splits:
            self.residual = self._branch(in_channels, half_out, stride, expand_first=True)
            self.shortcut = self._branch(in_channels, half_out, stride, expand_first=False)
        else:
            self.shortcut = nn.Sequential()
            self.residual = self._branch(in_channels // 2, in_channels // 2, stride, expand_first=True)
        self.half_in = in_channels // 2

    @staticmethod
    def _branch(in_channels: int, out_channels: int, stride: int, expand_first: bool) -> nn.Sequential:
        """[1x1 conv, BN, ReLU,] 3x3 depthwise conv, BN, 1x1 conv, BN, ReLU."""
        head = [nn.Conv2d(in_channels, in_channels, 1), nn.BatchNorm2d(in_channels),
                nn.ReLU(inplace=True)] if expand_first else []
        return nn.Sequential(
            *head,
            nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels),
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut, residual = torch.split(x, self.half_in, dim=1) if self.splits else (x, x)
        return channel_shuffle(torch.cat([self.shortcut(shortcut), self.residual(residual)], dim=1), 2)


SHUFFLENETV2_WIDTHS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024),
                       2.0: (244, 488, 976, 2048)}
"""Stage and head widths per width ratio; the reference builds ratio 1."""


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 for 32x32 inputs: 3x3 stem conv + BN (no ReLU), stages of 1 + (3, 7, 3) units starting at
    stride 2, a 1x1 conv head."""

    def __init__(self, num_classes: int = 100, ratio: float = 1.0):
        super().__init__()
        widths = SHUFFLENETV2_WIDTHS[ratio]
        self.pre = nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.BatchNorm2d(24))
        self.stage2 = self._make_stage(24, widths[0], 3)
        self.stage3 = self._make_stage(widths[0], widths[1], 7)
        self.stage4 = self._make_stage(widths[1], widths[2], 3)
        self.conv5 = nn.Sequential(nn.Conv2d(widths[2], widths[3], 1), nn.BatchNorm2d(widths[3]),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(widths[3], num_classes)
        self.feature_size = widths[3]

    @staticmethod
    def _make_stage(in_channels: int, out_channels: int, repeat: int) -> nn.Sequential:
        return nn.Sequential(ShuffleUnitV2(in_channels, out_channels, 2),
                             *(ShuffleUnitV2(out_channels, out_channels, 1) for _ in range(repeat)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv5(self.stage4(self.stage3(self.stage2(self.pre(x)))))
        feature = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return feature, self.fc(feature)


# ------------------------------------------------------------------------------------------------ small ViT
class PatchRearrange(nn.Module):
    """einops' ``b c (h p1) (w p2) -> b (h w) (p1 p2 c)``: patches in row-major order, each flattened with the
    channel fastest."""

    def __init__(self, patch_size: int):
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        p = self.patch_size
        x = x.reshape(b, c, height // p, p, width // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (height // p) * (width // p), p * p * c)


class Attention(nn.Module):
    """Pre-norm multi-head self-attention; dropout on the attention map and after the output projection."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.attend = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(dropout)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        # The reference skips the output projection only for one head of width dim, never the case here.
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(self.norm(x)).chunk(3, dim=-1))
        attn = self.dropout(self.attend(torch.matmul(q, k.transpose(-1, -2)) * self.scale))
        return self.to_out(torch.matmul(attn, v).transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    """``depth`` residual (attention, feed-forward) pairs, then a final LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(dim, heads, dim_head, dropout), FeedForward(dim, mlp_dim, dropout)])
            for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.norm(x)


class SmallViT(nn.Module):
    """The reference's einops ViT (lucidrains' vit-pytorch layout): LayerNorm'd patch embedding, learned position
    embedding drawn from N(0, 1), a class token, pre-norm blocks; the feature is the class token's output."""

    def __init__(self, *, image_size: int, patch_size: int, num_classes: int, dim: int, depth: int, heads: int,
                 mlp_dim: int, channels: int = 3, dim_head: int = 64, dropout: float = 0.0, emb_dropout: float = 0.0):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        self.image_size = image_size
        num_patches = (image_size // patch_size) ** 2
        patch_dim = channels * patch_size ** 2
        self.to_patch_embedding = nn.Sequential(PatchRearrange(patch_size), nn.LayerNorm(patch_dim),
                                                nn.Linear(patch_dim, dim), nn.LayerNorm(dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.dropout = nn.Dropout(emb_dropout)
        self.transformer = Transformer(dim, depth, heads, dim_head, mlp_dim, dropout)
        self.mlp_head = nn.Linear(dim, num_classes)
        self.feature_size = dim

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if img.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"this ViT takes {self.image_size}x{self.image_size} images (its position embedding "
                             f"has one entry per patch), got {img.shape[-2]}x{img.shape[-1]}")
        x = self.to_patch_embedding(img)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embedding
        feature = self.transformer(self.dropout(x))[:, 0]
        return feature, self.mlp_head(feature)


# ------------------------------------------------------------------------------------------------ registry
@register_model
def mobilenet(num_classes: int = 100) -> MobileNet:
    return MobileNet(num_classes=num_classes)


@register_model
def mobilenetv2(num_classes: int = 100) -> MobileNetV2:
    return MobileNetV2(num_classes=num_classes)


@register_model
def shufflenet(num_classes: int = 100) -> ShuffleNet:
    return ShuffleNet((4, 8, 4), num_classes=num_classes, groups=3)


@register_model
def shufflenetv2(num_classes: int = 100) -> ShuffleNetV2:
    return ShuffleNetV2(num_classes=num_classes)


@register_model
def vit_cifar(num_classes: int = 100) -> SmallViT:
    """``-net_* vit`` on CIFAR-100 in models/nets.py: 32x32 images, 8x8 patches, width 384, 6 blocks of 12 heads,
    MLP width 384, dropout 0.1, class-token pooling."""
    return SmallViT(image_size=32, patch_size=8, num_classes=num_classes, dim=384, depth=6, heads=12, mlp_dim=384,
                    dropout=0.1, emb_dropout=0.1)
