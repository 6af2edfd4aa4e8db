"""The U-Net of Ronneberger, Fischer & Brox (2015), readable in one sitting.

The contracting path repeats (3x3 conv, ReLU) x 2 then a 2x2 max-pool; the expanding
path repeats a 2x2 up-convolution, a concatenation with the *cropped* feature map of the
same level, and (3x3 conv, ReLU) x 2; a final 1x1 conv maps to the classes. With the
defaults (depth 5, width 64, valid convolutions) this is the paper's network: 23 conv
layers, 31,030,658 parameters for one input channel and two classes, 572x572 -> 388x388.

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
   Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

PADDINGS = ("valid", "same")
#: normalisation after each 3x3 conv: the paper's none, batch norm or group norm
NORMS = ("none", "batch", "group")
#: most groups of a group norm
MAX_GROUPS = 8


def upgrade_network_fields(fields: dict) -> dict:
    """Network fields as saved before normalisation had a name: ``batch_norm: bool``
    becomes ``norm`` ("batch" or "none"), so that older models and runs still load."""
    fields = dict(fields)
    if "batch_norm" in fields:
        old = fields.pop("batch_norm")
        if not isinstance(old, bool):
            raise ValueError(f"batch_norm must be true or false, got {old!r}")
        fields.setdefault("norm", "batch" if old else "none")
    return fields


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a :class:`UNet` (defaults are the paper's)."""

    in_channels: int = 1
    num_classes: int = 2
    depth: int = 5
    width: int = 64
    padding: str = "valid"
    dropout: float = 0.5
    norm: str = "none"

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_classes", "depth", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop the last two dimensions of ``x`` to ``size`` around the centre."""
    h, w = x.shape[-2:]
    th, tw = size
    if th > h or tw > w:
        raise ValueError(f"cannot crop {h}x{w} to {th}x{tw}")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw]


def norm_groups(channels: int) -> int:
    """Groups of a group norm over ``channels``: the largest divisor up to
    :data:`MAX_GROUPS`, so that every width works (16 channels: 8 groups of 2)."""
    return max(g for g in range(1, MAX_GROUPS + 1) if channels % g == 0)


def norm_layer(norm: str, channels: int) -> nn.Module | None:
    """The normalisation after a 3x3 conv, or None for the paper's (none)."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(norm_groups(channels), channels)
    return None


class DoubleConv(nn.Sequential):
    """(3x3 conv -> [norm] -> ReLU) x 2, valid or same padding."""

    def __init__(self, cin: int, cout: int, padding: str, norm: str) -> None:
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for c in (cin, cout):
            after = norm_layer(norm, cout)
            layers.append(nn.Conv2d(c, cout, 3, padding=pad, bias=after is None))
            if after is not None:
                layers.append(after)
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Up(nn.Module):
    """2x2 up-convolution halving the channels, crop-and-concat, double conv."""

    def __init__(self, cin: int, padding: str, norm: str) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(cin, cin // 2, padding, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (N, C/2, 2H, 2W)
        skip = center_crop(skip, tuple(x.shape[-2:]))  # the paper's "copy and crop"
        return self.conv(torch.cat([skip, x], dim=1))  # (N, C, 2H, 2W) -> (N, C/2, ...)


class UNet(nn.Module):
    """The U-Net, with the paper's defaults.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and output classes (logits, no softmax).
    depth : int
        Number of resolution levels (the paper: 5, i.e. 4 max-pools).
    width : int
        Channels of the first level; they double at each level down (64 -> 1024).
    padding : {"valid", "same"}
        ``"valid"`` is the paper's: the output is smaller than the input by
        ``2 * margin`` and every input tile sees its whole context. ``"same"`` keeps
        the size (input a multiple of ``2**(depth-1)``).
    dropout : float
        Dropout probability at the end of the contracting path (0 disables it).
    norm : {"none", "batch", "group"}
        Normalisation after each 3x3 conv: none (the paper's), batch norm, or group
        norm (:func:`norm_groups` groups; independent of the batch size).
    batch_norm : bool, optional
        ``True`` is ``norm="batch"``, ``False`` ``norm="none"`` (the earlier spelling).

    Examples
    --------
    >>> net = UNet()
    >>> net.output_size(572)
    388
    >>> sum(p.numel() for p in net.parameters())
    31030658
    >>> net.valid_input_size(500)
    508
    """

    def __init__(
        self,
        in_channels: int = UNetConfig.in_channels,
        num_classes: int = UNetConfig.num_classes,
        depth: int = UNetConfig.depth,
        width: int = UNetConfig.width,
        padding: str = UNetConfig.padding,
        dropout: float = UNetConfig.dropout,
        norm: str = UNetConfig.norm,
        *,
        batch_norm: bool | None = None,
    ) -> None:
        super().__init__()
        if batch_norm is not None:  # the shared design's spelling of norm="batch"
            norm = upgrade_network_fields({"batch_norm": batch_norm})["norm"]
        self.config = UNetConfig(in_channels, num_classes, depth, width, padding,
                                 dropout, norm)
        chans = [width * 2**i for i in range(depth)]  # e.g. 64, 128, 256, 512, 1024
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.down.append(DoubleConv(cin, c, padding, norm))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList(Up(c, padding, norm) for c in reversed(chans[1:]))
        self.head = nn.Conv2d(width, num_classes, kernel_size=1)
        self.reset_parameters()

    @classmethod
    def from_config(cls, config: UNetConfig | dict) -> UNet:
        if isinstance(config, dict):
            config = UNetConfig(**upgrade_network_fields(config))
        return cls(**asdict(config))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """He-normal init: std = sqrt(2 / N), N = fan-in (e.g. 9 * 64 = 576), zero bias."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                if isinstance(m, nn.ConvTranspose2d):
                    # each output pixel of a stride-2, 2x2 up-conv sees one input pixel
                    fan_in = m.in_channels
                else:
                    fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                with torch.no_grad():
                    m.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
                    if m.bias is not None:
                        m.bias.zero_()

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, num_classes, output_size(H), output_size(W))."""
        self.check_input_shape(tuple(x.shape[-2:]))
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = self.pool(x)  # (N, C, H/2, W/2)
            x = block(x)
            skips.append(x)
        x = self.dropout(skips.pop())  # end of the contracting path
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)

    # --------------------------------------------------------- size arithmetic
    @property
    def conv_shrink(self) -> int:
        """Pixels lost per side by one double conv (2 for valid, 0 for same)."""
        return 2 if self.config.padding == "valid" else 0

    @property
    def margin(self) -> int:
        """Context pixels each output pixel needs on each side (valid: 92 for depth 5).

        For ``padding="same"`` the network has no exact margin; this returns the margin
        the valid network of the same depth would have, which :func:`tileunet.inference.overlap`
        uses as overlap so tile borders see (almost) all of their context.
        """
        return _valid_margin(self.config.depth)

    @property
    def size_step(self) -> int:
        """Valid input sizes are ``step`` apart (``2**(depth-1)``)."""
        return 2 ** (self.config.depth - 1)

    def _trace(self, n: int) -> int | None:
        """Output size for input ``n``, or None when some layer would break."""
        if self.config.padding == "same":
            return n if n >= 1 and n % self.size_step == 0 else None
        s = self.conv_shrink
        for _ in range(self.config.depth - 1):
            n -= 2 * s
            if n < 2 or n % 2:
                return None
            n //= 2
        n -= 2 * s
        if n < 1:
            return None
        for _ in range(self.config.depth - 1):
            n = 2 * n - 2 * s
            if n < 1:
                return None
        return n

    def output_size(self, n: int) -> int:
        """Output size for input size ``n``; raises ValueError for invalid sizes."""
        out = self._trace(int(n))
        if out is None:
            lo, hi = self._neighbours(int(n))
            near = f"{lo} and {hi} are" if lo is not None else f"the smallest is {hi}"
            raise ValueError(
                f"{n} is not a valid input for depth {self.config.depth} "
                f"({self.config.padding} padding); {near}"
            )
        return out

    def valid_input_size(self, n: int) -> int:
        """The smallest valid input size >= ``n``."""
        m = max(int(n), 1)
        step = self.size_step
        # valid sizes form an arithmetic progression; jump to its residue class
        first = self.min_input_size()
        if m <= first:
            return first
        return first + math.ceil((m - first) / step) * step

    def min_input_size(self) -> int:
        n = 1
        while self._trace(n) is None:
            n += 1
        return n

    def _neighbours(self, n: int) -> tuple[int | None, int]:
        hi = self.valid_input_size(n + 1 if self._trace(n) is not None else n)
        lo = hi - self.size_step
        return (lo if lo >= self.min_input_size() else None), hi

    def input_size_for_output(self, out: int) -> int:
        """The smallest valid input whose output is at least ``out`` pixels."""
        n = self.min_input_size()
        while self._trace(n) < out:
            n += self.size_step
        return n

    def check_input_shape(self, shape: tuple[int, int]) -> None:
        for n in shape:
            self.output_size(n)

    def valid_sizes(self, max_input: int) -> list[tuple[int, int]]:
        """Table of (input, output) sizes up to ``max_input``."""
        out = []
        n = self.min_input_size()
        while n <= max_input:
            out.append((n, self.output_size(n)))
            n += self.size_step
        return out


def _valid_margin(depth: int) -> int:
    """(input - output) / 2 of the valid U-Net of this depth (92 for depth 5)."""
    # contracting path: 4 px lost per level at scale 2**i (levels 0..depth-1),
    # expanding path: 4 px per level at scale 2**i (levels depth-2..0)
    lost = sum(4 * 2**i for i in range(depth)) + sum(4 * 2**i for i in range(depth - 1))
    return lost // 2


def count_convs(net: nn.Module) -> int:
    """Number of convolution layers (3x3, up-convs and the 1x1 head)."""
    return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in net.modules())


__all__ = ["UNet", "UNetConfig", "center_crop", "count_convs"]
