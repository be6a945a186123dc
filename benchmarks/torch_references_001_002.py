"""PyTorch references of papers 001 (HybridNet A1 / A2, DeepLab-VGG, DepthNet) and 002 (DeepLab-v2 ResNet-101).

Whole-model references for ``benchmarks/compare.py`` and their key tables onto our variables. Written from
docs/model_spec.md §2.1-§2.4 (paper 001) and §3.1 (paper 002), the layer tables in
``semdepth_jax/models/hybridnet.py`` / ``deeplab.py``, and the block-level references of
``tests/parity/test_hybridnet_parity.py``. NCHW here, NHWC in the library. Layer by layer:

* Input: float32 RGB in [0, 1]; Caffe normalisation inside ``forward`` (§2.1, §3.1: x 255, RGB -> BGR,
  minus the BGR mean (104.008, 116.669, 122.675), no std), the default of every model here.
* Paper 002 trunk: ``torchvision.models.resnet101(weights=None, replace_stride_with_dilation=[False, True,
  True], norm_layer=torchvision.ops.misc.FrozenBatchNorm2d)`` (``ResNet(Bottleneck, depths)`` for reduced
  depths) changed as §3.1 says: stem pool ``ceil_mode=True``; the stride of the first block of layer2..4 on
  its first 1x1 (Caffe / MSRA); every block of layer3 / layer4 dilated 2 / 4 (torchvision gives a dilated
  stage's first block the previous dilation); no ``fc``. FrozenBatchNorm2d keeps weight, bias and
  statistics as buffers (eps 1e-5), like our ``FROZEN_BN`` (``batch_stats``), so both have the same
  trainable parameters. Its key table is the backbone's own (``resnet101_deeplab`` entry of
  ``semdepth_jax.models.backbones``) under ``backbone.``.
* Paper 002 heads (§3.1): per head four 3x3 convolutions 2048 -> K with bias, dilation = padding = rate,
  **summed** (no BN / ReLU), then ``F.interpolate(bilinear, align_corners=False)`` (half-pixel centres, no
  antialias) to the input size, in training and inference.
* Paper 001 trunk (§2.1): ``torchvision.models.vgg.make_layers`` (3x3 pad-1 convs + ReLU; ``features.N``
  numbering as torchvision's VGG16, so the key table is ``backbones.vgg.key_table``) with every pool
  replaced by Caffe's ``MaxPool2d(3, s, 1, ceil_mode=True)`` (s = 2 after blocks 1-3, 1 after 4-5) and the
  block-5 convolutions dilated 2 (padding 2).
* ASPP-L (§2.1): per rate r: fc6 3x3 dilation = padding = r, ReLU, dropout; fc7 1x1, ReLU, dropout; fc8 1x1;
  the four fc8 outputs summed.
* DepthNet parts (§2.2 reconstruction): AlexNet trunk conv1..conv5 (kernels 11/5/3/3/3, padding k // 2,
  conv1 stride 2), each ReLU then ``nn.LocalResponseNorm(5, 1e-4, 0.75, 1)`` (Caffe ACROSS_CHANNELS), Caffe
  pools after conv1 and conv5; global net FC ``fc6`` (ReLU, dropout) and ``fc7`` to the h x w grid. The FC
  reads the trunk output in **NHWC** order (``permute(0, 2, 3, 1)`` before flattening), as our Dense does;
  ``fc_grid`` = ``F.adaptive_avg_pool2d`` first. Gradient net: trunk + 3x3 pad-1 conv to 2 maps. Refining
  net: conv1 (9x9 / 2, pad 4), ReLU, LRN, Caffe pool; every coarse map resized by ``F.interpolate(bilinear,
  align_corners=True)`` (Caffe ``Interp``) to that grid and concatenated after the conv1 features; 5x5
  pad-2 convs with ReLU, the last linear to one channel (the depth, metres, linear head).
* Paper 001 outputs: training mode returns the stride-8 / stride-4 maps; inference mode resizes them to the
  input size with ``align_corners=True`` (Caffe deploy ``Interp``, ``upsample_outputs=True``).

``forward`` returns only the output ``compare.py`` compares (HybridNet: ``depth``, so the segmentation
head is not run; XLA likewise drops it from the JAX step, whose loss reads ``depth`` only);
``forward_all`` returns every output as a dict of NCHW tensors. Weights go through the library's weight
converter (``semdepth_jax.weights.keymap.apply_key_table``, strict).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from semdepth_jax.weights.keymap import Rule

CAFFE_BGR_MEAN = (104.008, 116.669, 122.675)
"""DeepLab's Caffe input mean in B, G, R order, 0-255 range (docs/model_spec.md §2.1, §3.1)."""

LRN = (5, 1e-4, 0.75, 1.0)
"""Caffe / AlexNet LRN (local_size, alpha, beta, k), docs/model_spec.md §2.2."""

ALEXNET_KERNELS = (11, 5, 3, 3, 3)


def _torch():
  import torch

  return torch


def caffe_bgr(x: Any) -> Any:
  """(B, 3, H, W) RGB in [0, 1] -> Caffe input: BGR, 0-255, BGR mean subtracted (§2.1)."""
  torch = _torch()
  mean = torch.tensor(CAFFE_BGR_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
  return (x * 255.0).flip(1) - mean


def prefixed(table: Sequence[Rule], src: str, dst: str) -> list[Rule]:
  """``table`` with ``src`` prepended to its source keys and ``dst`` to its target paths."""
  return [Rule(src + r.source, dst + r.target if r.target else "", r.kind) for r in table]


# ------------------------------------------------------------------------------------------------------
# Paper 002: DeepLab-v2 ResNet-101.
# ------------------------------------------------------------------------------------------------------
def build_resnet_deeplab(depths: Sequence[int] = (3, 4, 23, 3)) -> Any:
  """torchvision's ResNet-101 (or ``ResNet(Bottleneck, depths)``) made DeepLab-v2's (§3.1, module doc).

  Returns:
    The torchvision ``ResNet`` with FrozenBatchNorm2d, output stride 8, ``fc`` removed (use its stem and
    ``layer1`` .. ``layer4``; layer4 has 2048 channels).
  """
  import torchvision
  from torchvision.models import resnet
  from torchvision.ops.misc import FrozenBatchNorm2d

  kw = {"replace_stride_with_dilation": [False, True, True], "norm_layer": FrozenBatchNorm2d}
  if tuple(depths) == (3, 4, 23, 3):
    m = torchvision.models.resnet101(weights=None, **kw)
  else:
    m = resnet.ResNet(resnet.Bottleneck, list(depths), **kw)
  m.maxpool.ceil_mode = True
  for layer in (m.layer2, m.layer3, m.layer4):
    first = layer[0]
    first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)
  for layer, d in ((m.layer3, 2), (m.layer4, 4)):
    for block in layer:
      block.conv2.dilation = block.conv2.padding = (d, d)
  del m.fc
  return m


def build_deeplab_v2(heads: dict[str, int], depths: Sequence[int], rates: Sequence[int]) -> Any:
  """DeepLab-v2 ResNet-101 with ASPP heads (paper 002, §3.1; ``semdepth_jax.models.deeplab.DeepLabV2``).

  Args:
    heads: ASPP submodule name (``aspp_bins`` / ``aspp_depth`` / ``aspp_seg``) -> output channels; the
      first one is what ``forward`` returns.
    depths: blocks per ResNet stage ((3, 4, 23, 3) = ResNet-101).
    rates: ASPP dilation rates ((6, 12, 18, 24)).

  Returns:
    An ``nn.Module`` mapping (B, 3, H, W) RGB [0, 1] to (B, K, H, W) float32 (upsampled logits / depth).
  """
  torch = _torch()
  nn = torch.nn
  F = nn.functional

  class DeepLabV2Ref(nn.Module):
    def __init__(self):
      super().__init__()
      self.backbone = build_resnet_deeplab(depths)
      self.heads = list(heads)
      for name, k in heads.items():
        convs = [nn.Conv2d(2048, k, 3, padding=int(r), dilation=int(r)) for r in rates]
        setattr(self, name, nn.ModuleList(convs))

    def forward_all(self, x):
      size = x.shape[2:]
      b = self.backbone
      y = b.maxpool(b.relu(b.bn1(b.conv1(caffe_bgr(x)))))
      y = b.layer4(b.layer3(b.layer2(b.layer1(y))))
      out = {}
      for name in self.heads:
        s = sum(conv(y) for conv in getattr(self, name))
        out[name] = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
      return out

    def forward(self, x):
      return self.forward_all(x)[self.heads[0]]

  return DeepLabV2Ref()


def deeplab_v2_key_table(
  heads: Sequence[str], depths: Sequence[int], rates: Sequence[int]
) -> list[Rule]:
  """Key table from :func:`build_deeplab_v2`'s state dict onto ``DeepLabV2`` variables."""
  from semdepth_jax.models import backbones

  entry = backbones.get_backbone_entry("resnet101_deeplab")
  table = prefixed(entry.key_table(depths=tuple(depths)), "backbone.", "backbone/")
  for name in heads:
    for i in range(len(rates)):
      table += [
        Rule(f"{name}.{i}.weight", f"{name}/conv{i}/kernel", "conv"),
        Rule(f"{name}.{i}.bias", f"{name}/conv{i}/bias", "copy"),
      ]
  return table


def randomise_frozen_batchnorm(model: Any, seed: int) -> None:
  """Random weight, bias and statistics of every FrozenBatchNorm2d (buffers), near the identity."""
  torch = _torch()
  from torchvision.ops.misc import FrozenBatchNorm2d

  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, FrozenBatchNorm2d):
        c = m.weight.numel()
        m.weight.copy_(0.5 + 0.5 * torch.rand(c, generator=g))
        m.bias.copy_(0.1 * torch.randn(c, generator=g))
        m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
        m.running_var.copy_(0.5 + torch.rand(c, generator=g))


# ------------------------------------------------------------------------------------------------------
# Paper 001: DeepLab-VGG, DepthNet, HybridNet A1 / A2.
# ------------------------------------------------------------------------------------------------------
def _caffe_pool(stride: int = 2) -> Any:
  return _torch().nn.MaxPool2d(3, stride, 1, ceil_mode=True)


def _caffe_pool_size(n: int) -> int:
  """Output size of ``MaxPool2d(3, 2, 1, ceil_mode=True)`` (PyTorch's rule: the last window starts inside)."""
  out = math.ceil((n + 2 - 3) / 2) + 1
  return out - 1 if (out - 1) * 2 >= n + 1 else out


def trunk_grid(size: Sequence[int]) -> tuple[int, int]:
  """(h, w) of the AlexNet trunk's output for an (H, W) input (conv1 11/2 pad 5, two Caffe pools)."""
  return tuple(_caffe_pool_size(_caffe_pool_size((int(n) + 10 - 11) // 2 + 1)) for n in size)


def build_vgg_deeplab(widths: Sequence[Sequence[int]]) -> Any:
  """DeepLab-v2 VGG16 feature net (§2.1) from ``torchvision.models.vgg.make_layers``; ``.features``."""
  torch = _torch()
  from torchvision.models import vgg

  cfg: list = []
  for block in widths:
    cfg += [int(w) for w in block] + ["M"]
  features = vgg.make_layers(cfg)
  idx = 0
  for b, block in enumerate(widths):
    for _ in block:
      if b == 4:
        features[idx].dilation = features[idx].padding = (2, 2)
      idx += 2  # conv, ReLU
    features[idx] = _caffe_pool(2 if b < 3 else 1)
    idx += 1
  trunk = torch.nn.Module()
  trunk.features = features
  return trunk


def _build_aspp(
  cin: int, num_classes: int, width: int, rates: Sequence[int], dropout: float
) -> Any:
  torch = _torch()
  nn = torch.nn

  class ASPPRef(nn.Module):
    def __init__(self):
      super().__init__()
      self.rates = [int(r) for r in rates]
      for i, r in enumerate(self.rates, start=1):
        setattr(self, f"fc6_{i}", nn.Conv2d(cin, width, 3, padding=r, dilation=r))
        setattr(self, f"fc7_{i}", nn.Conv2d(width, width, 1))
        setattr(self, f"fc8_{i}", nn.Conv2d(width, num_classes, 1))
      self.drop = nn.Dropout(dropout)

    def forward(self, x):
      total = 0
      for i in range(1, len(self.rates) + 1):
        y = self.drop(torch.relu(getattr(self, f"fc6_{i}")(x)))
        y = self.drop(torch.relu(getattr(self, f"fc7_{i}")(y)))
        total = total + getattr(self, f"fc8_{i}")(y)
      return total

  return ASPPRef()


def _build_trunk(widths: Sequence[int]) -> Any:
  """AlexNet trunk conv1..conv5 (ReLU + LRN each, Caffe pools after conv1 and conv5), §2.2."""
  torch = _torch()
  nn = torch.nn

  class Trunk(nn.Module):
    def __init__(self):
      super().__init__()
      cin = 3
      for i, (w, k) in enumerate(zip(widths, ALEXNET_KERNELS, strict=True)):
        conv = nn.Conv2d(cin, int(w), k, stride=2 if i == 0 else 1, padding=k // 2)
        setattr(self, f"conv{i + 1}", conv)
        cin = int(w)
      self.lrn = nn.LocalResponseNorm(*LRN)
      self.pool = _caffe_pool()

    def forward(self, x):
      for i in range(5):
        x = self.lrn(torch.relu(getattr(self, f"conv{i + 1}")(x)))
        if i in (0, 4):
          x = self.pool(x)
      return x

  return Trunk()


def _build_global(
  widths: Sequence[int], hidden: int, grid: tuple[int, int], fc_grid: Sequence[int] | None, dropout
) -> Any:
  """DepthNet's global net (§2.2): trunk, FC ``hidden`` (ReLU, dropout), FC to the trunk's grid."""
  torch = _torch()
  nn = torch.nn
  F = nn.functional

  class GlobalRef(nn.Module):
    def __init__(self):
      super().__init__()
      self.trunk = _build_trunk(widths)
      cells = grid[0] * grid[1] if fc_grid is None else int(fc_grid[0]) * int(fc_grid[1])
      self.fc6 = nn.Linear(cells * int(widths[-1]), hidden)
      self.fc7 = nn.Linear(hidden, grid[0] * grid[1])
      self.drop = nn.Dropout(dropout)

    def forward(self, x):
      t = self.trunk(x)
      b, _, h, w = t.shape
      if fc_grid is not None:
        t = F.adaptive_avg_pool2d(t, tuple(int(g) for g in fc_grid))
      y = self.drop(torch.relu(self.fc6(t.permute(0, 2, 3, 1).reshape(b, -1))))
      return self.fc7(y).reshape(b, 1, h, w)

  return GlobalRef()


def _build_gradient(widths: Sequence[int]) -> Any:
  torch = _torch()
  nn = torch.nn

  class GradientRef(nn.Module):
    def __init__(self):
      super().__init__()
      self.trunk = _build_trunk(widths)
      self.out = nn.Conv2d(int(widths[-1]), 2, 3, padding=1)

    def forward(self, x):
      return self.out(self.trunk(x))

  return GradientRef()


def _build_refine(coarse_channels: int, conv1_width: int, widths: Sequence[int]) -> Any:
  """Refining net (§2.2): conv1 9x9/2 + ReLU + LRN + pool, concat Interp'd coarse maps, 5x5 convs."""
  torch = _torch()
  nn = torch.nn
  F = nn.functional

  class RefineRef(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, conv1_width, 9, stride=2, padding=4)
      self.lrn = nn.LocalResponseNorm(*LRN)
      self.pool = _caffe_pool()
      cin = conv1_width + coarse_channels
      self.n = len(widths)
      for i, w in enumerate((*widths, 1)):
        setattr(self, f"conv{i + 2}", nn.Conv2d(cin, int(w), 5, padding=2))
        cin = int(w)

    def forward(self, x, coarse):
      f = self.pool(self.lrn(torch.relu(self.conv1(x))))
      size = f.shape[2:]
      ups = [F.interpolate(c, size=size, mode="bilinear", align_corners=True) for c in coarse]
      y = torch.cat([f, *ups], dim=1)
      for i in range(self.n):
        y = torch.relu(getattr(self, f"conv{i + 2}")(y))
      return getattr(self, f"conv{self.n + 2}")(y)

  return RefineRef()


def build_paper001(name: str, attrs: dict, image_size: Sequence[int]) -> Any:
  """The PyTorch reference of ``name`` (``deeplab_vgg``, ``depthnet``, ``hybridnet_a1``/``_a2``).

  Args:
    name: registry name.
    attrs: the model attributes given to ``get_model`` (sub-network mappings: ``backbone``, ``aspp``,
      ``global_net``, ``gradient_net``, ``refine``; unset keys take the library defaults of §2).
    image_size: (H, W) input size (the global net's FC depends on it).

  Returns:
    An ``nn.Module``: ``forward`` (B, 3, H, W) RGB [0, 1] -> ``seg_logits`` (deeplab_vgg) or ``depth``
    (the others), stride-8 / stride-4 maps in training mode and H x W in inference mode; ``forward_all``
    -> every output (``seg_logits``, ``depth``, ``global_depth``, ``gradients``).
  """
  torch = _torch()
  nn = torch.nn
  F = nn.functional
  from semdepth_jax.models import hybridnet
  from semdepth_jax.models.backbones import vgg

  vgg_widths = attrs.get("backbone", {}).get("widths", vgg.VGG16_WIDTHS)
  aspp = {"width": 1024, "rates": (6, 12, 18, 24), "dropout_rate": 0.5, **attrs.get("aspp", {})}
  gcfg = {"widths": hybridnet.ALEXNET_WIDTHS, "fc_hidden": 1024, "fc_grid": None}
  gcfg.update(attrs.get("global_net", {}))
  dwidths = attrs.get("gradient_net", {}).get("widths", hybridnet.ALEXNET_WIDTHS)
  rcfg = {"conv1_width": 96, "widths": (64, 64, 64), **attrs.get("refine", {})}
  num_classes = int(attrs.get("num_classes", 19 if name.startswith("hybridnet") else 21))
  has_vgg = name != "depthnet"
  has_global = name in ("depthnet", "hybridnet_a2")

  class Paper001Ref(nn.Module):
    def __init__(self):
      super().__init__()
      coarse = 0
      if has_global:
        grid = trunk_grid(image_size)
        self.global_net = _build_global(
          gcfg["widths"], int(gcfg["fc_hidden"]), grid, gcfg["fc_grid"], 0.5
        )
        coarse += 1
      if name == "depthnet":
        self.gradient_net = _build_gradient(dwidths)
        coarse += 2
      if has_vgg:
        self.backbone = build_vgg_deeplab(vgg_widths)
        cin = int(vgg_widths[-1][-1])
        self.aspp = _build_aspp(
          cin, num_classes, int(aspp["width"]), aspp["rates"], float(aspp["dropout_rate"])
        )
        coarse += cin
      if name != "deeplab_vgg":
        self.refine_net = _build_refine(coarse, int(rcfg["conv1_width"]), rcfg["widths"])

    def forward_all(self, image, seg: bool = True):
      x = caffe_bgr(image)
      out, coarse = {}, []
      if has_global:
        out["global_depth"] = self.global_net(x)
        coarse.append(out["global_depth"])
      if name == "depthnet":
        out["gradients"] = self.gradient_net(x)
        coarse.append(out["gradients"])
      if has_vgg:
        feats = self.backbone.features(x)
        if seg or name == "deeplab_vgg":
          out["seg_logits"] = self.aspp(feats)
        coarse.append(feats)
      if name != "deeplab_vgg":
        out["depth"] = self.refine_net(x, coarse)  # linear head, metres
      if not self.training:
        for k in ("seg_logits", "depth"):
          if k in out:
            out[k] = F.interpolate(
              out[k], size=image.shape[2:], mode="bilinear", align_corners=True
            )
      return out

    def forward(self, image):
      key = "seg_logits" if name == "deeplab_vgg" else "depth"
      return self.forward_all(image, seg=False)[key]

  return Paper001Ref()


def paper001_key_table(name: str, attrs: dict) -> list[Rule]:
  """Key table from :func:`build_paper001`'s state dict onto the registry model's variables."""
  from semdepth_jax.models.backbones import vgg

  table: list[Rule] = []

  def conv(src: str, dst: str, kind: str = "conv") -> None:
    table.extend([Rule(f"{src}.weight", f"{dst}/kernel", kind), Rule(f"{src}.bias", f"{dst}/bias")])

  if name != "depthnet":
    widths = attrs.get("backbone", {}).get("widths", vgg.VGG16_WIDTHS)
    trunk = vgg.key_table(widths=widths, variant="deeplab_v2", num_classes=0)
    table += prefixed(trunk, "backbone.", "backbone/")
    rates = attrs.get("aspp", {}).get("rates", (6, 12, 18, 24))
    for i in range(1, len(rates) + 1):
      for layer in ("fc6", "fc7", "fc8"):
        conv(f"aspp.{layer}_{i}", f"aspp/{layer}_{i}")
  nets = {"depthnet": ("global_net", "gradient_net"), "hybridnet_a2": ("global_net",)}
  for net in nets.get(name, ()):
    for i in range(1, 6):
      conv(f"{net}.trunk.conv{i}", f"{net}/conv{i}")
  if name in nets:
    conv("global_net.fc6", "global_net/fc6", "linear")
    conv("global_net.fc7", "global_net/fc7", "linear")
  if name == "depthnet":
    conv("gradient_net.out", "gradient_net/out")
  if name != "deeplab_vgg":
    n = len(attrs.get("refine", {}).get("widths", (64, 64, 64)))
    for i in range(1, n + 3):
      conv(f"refine_net.conv{i}", f"refine_net/conv{i}")
  return table


def calibrate_scales(model: Any, x: Any) -> None:
  """Rescales every Conv2d / Linear so its output on ``x`` has unit RMS (eval mode, one forward).

  Random weights on Caffe-range (0-255) inputs through 13-101 layers give outputs far from 1, where a
  float32 comparison's absolute tolerance means little; this keeps every layer's output O(1). Each
  layer's weight and bias are divided by its output RMS in a forward hook, which also rescales the output
  passed on, so later layers are calibrated on the rescaled values.
  """
  torch = _torch()
  nn = torch.nn

  def hook(m, _inp, y):
    s = y.float().square().mean().sqrt().clamp_min(1e-12)
    m.weight.div_(s)
    if m.bias is not None:
      m.bias.div_(s)
    return y / s

  handles = [
    m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)
  ]
  was_training = model.training
  model.eval()
  try:
    with torch.no_grad():
      model.forward_all(x) if hasattr(model, "forward_all") else model(x)
  finally:
    for h in handles:
      h.remove()
    model.train(was_training)
