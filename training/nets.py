"""Compact networks: a small ResNet classifier and a small U-Net.

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


class FlipAveraged(nn.Module):
    """Test-time augmentation inside the graph: the image and its mirror image, averaged.

    The mirror image's activations are mirrored back and averaged with the image's; the head
    then runs on the average. Global average pooling does not see the mirroring, so
    ``logits = W @ mean_hw(A) + b`` still holds exactly for the exported ``A`` (Grad-CAM++ from
    the manifest stays exact) and the logits are the mean of the two views' logits.
    """

    def __init__(self, net: SmallResNet) -> None:
        super().__init__()
        self.net = net
        self.head = net.head
        self.n_channels = net.n_channels

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        a = self.net.activations(x)
        b = self.net.activations(torch.flip(x, dims=(3,)))
        return 0.5 * (a + torch.flip(b, dims=(3,)))

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


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
