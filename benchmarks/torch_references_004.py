"""PyTorch references of DS-SIDENet (paper 004), 3D CNN-S and SSegDep-Net (paper 000), with key tables.

Like ``benchmarks/torch_references.py`` (whose building blocks the paper-000 references here import), these
are written from the spec and the library's layer tables, not from upstream code (paper 004 has none):

* **DS-SIDENet** (docs/model_spec.md §5.1 encoder = paper Table 1, §5.2 decoder = paper Table 2, plus the
  reconstructions the library's ``semdepth_jax/models/ds_sidenet.py`` docstring lists for what the paper
  leaves UNSPECIFIED). Layer-order facts: every conv is bias-free and followed by
  ``nn.BatchNorm2d`` with PyTorch's defaults (eps 1e-5, momentum 0.1) and ReLU; a 3x3 conv of dilation d
  pads d, so a stride-2 conv gives ``ceil(n / 2)``; a depthwise-separable conv is depthwise 3x3 -> BN ->
  ReLU -> pointwise 1x1 -> BN -> ReLU (MobileNet-v1), no residuals; the input is normalised with the
  ImageNet mean / std. ``upproj`` (FCRN, Laina et al.) is written literally: a x2 unpooling that puts each
  value at the top-left of its 2x2 cell (zeros elsewhere) then a bias-free 5x5 conv (padding 2), branch A
  5x5 -> BN -> ReLU -> 3x3 -> BN, branch B 5x5 -> BN, output ReLU(A + B); for t = 1 no unpooling.
  ``upproj-con`` = ReLU(BN(conv3x3([U, Y, Z]))) with U the upproj output cropped (top-left) to the size of
  the encoder skip Y and Z the normalised RGB input through ``F.adaptive_avg_pool2d`` to that size. SAM =
  stacked AM modules, each 3x3 conv-BN-ReLU at dilations 1, 2, 2, 4, 4, ..., k/2, k/2, k, a 1x1
  conv-BN-ReLU, a 1x1 conv-BN, then ReLU(. + input). Output layers: 3x3 conv with bias. Both branches are
  computed (as in our model); the forward returns the classification logits and keeps the regression
  output in ``last_regression``.
* **3D CNN-S** (docs/model_spec.md §1.3): 2 x (Conv3d 'same' -> ReLU) -> BN -> MaxPool3d(2), twice; 2 x
  (Conv3d -> ReLU); Conv3d 1 'valid'; max over the remaining depth planes; sigmoid. Keras BN constants.
* **SSegDep-Net** (docs/model_spec.md §1.5): ``torch_references.build_unet`` -> OHESS planes from its
  logits (``'argmax'``: one-hot of the arg-max class; ``'threshold'``: sigmoid > 0.5 per class) -> the
  volume [R, G, B, plane 0 .. P-1] on the depth axis, zero planes up to depth 12 -> ``build_cnn3d_up``.

The weights go through the library's weight converter (``semdepth_jax.weights.keymap.apply_key_table``,
strict). :func:`liven`, :func:`calibrate_batchnorm` and :func:`centre_unet_logits` make random weights
whose output depends on the input (checked by ``tests/test_compare_references_004.py``): with PyTorch's
default init, random BN statistics and 4 channels, the 3-D nets' smoke output was constant. Used by
``benchmarks/compare.py`` and ``tests/test_compare_references_004.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks import torch_references as refs
from semdepth_jax.weights.keymap import Rule

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Paper Table 1 (docs/model_spec.md §5.1): per block, (kind, out channels, kernel, stride, dilation).
_DS_BLOCK4_REPEAT = (("dw", 32, 3, 1, 2),) * 12
DS_ENCODER = {
  "low": (
    (("conv", 32, 3, 2, 1), ("conv", 64, 3, 1, 1)),
    (("dw", 64, 3, 1, 1),) * 3 + (("dw", 128, 3, 2, 1),),
    (("dw", 128, 3, 1, 1),) * 3 + (("dw", 256, 3, 2, 1),),
    _DS_BLOCK4_REPEAT + (("dw", 256, 3, 2, 1),),
    (("dw", 256, 3, 2, 1), ("conv", 512, 1, 1, 1)),
  ),
  "high": (
    (("conv", 32, 3, 2, 1), ("conv", 64, 3, 1, 1)),
    (("dw", 64, 3, 1, 1),) * 3 + (("dw", 128, 3, 2, 1),),
    (("dw", 128, 3, 1, 1),) * 3 + (("dw", 256, 3, 1, 1),),
    _DS_BLOCK4_REPEAT + (("dw", 256, 3, 1, 1),),
    (("dw", 256, 3, 1, 1), ("conv", 128, 1, 1, 1)),
  ),
}
"""Encoder of paper Table 1 per depth range, written from docs/model_spec.md §5.1."""

DS_DECODER = {"low": (2, 2, 2, 2), "high": (1, 1, "sam", 2)}
"""Scale t of decoder blocks 1-4 (paper Table 2); block 5 is a plain upproj with t = 2."""

DS_SKIPS = {"low": (4, 3, 2, 1), "high": (5, 4, None, 1)}
"""Encoder block (1-5) whose output is the skip Y of decoder blocks 1-4 (docs/model_spec.md §5.2)."""


def _dilations(k: int) -> list[int]:
  out, d = [1], 2
  while d < k:
    out += [d, d]
    d *= 2
  return [*out, k]


def build_ds_sidenet(
  variant: str = "low",
  width_divisor: int = 1,
  cls_channels: int = 69,
  sam_k: int = 16,
  sam_modules: int = 3,
):
  """PyTorch DS-SIDENet with both decoder branches (docs/model_spec.md §5.1-§5.2; defaults of our model).

  Args:
    variant: ``'low'`` or ``'high'`` depth range.
    width_divisor: divides every channel count of Tables 1-2 (at least 1 channel).
    cls_channels: output channels of the classification branch (K + 1 for log10 bins).
    sam_k: largest dilation of an AM module (high range only).
    sam_modules: AM modules in SAM.

  Returns:
    An ``nn.Module`` mapping (B, 3, H, W) RGB in [0, 1] to the classification logits
    (B, cls_channels, H, W); the regression output (B, 1, H, W) of the same call is kept in
    ``last_regression``.
  """
  torch = refs._torch()
  nn = torch.nn
  F = torch.nn.functional

  def scaled(c: int) -> int:
    return max(1, c // width_divisor)

  class ConvBN(nn.Module):
    def __init__(self, cin, cout, k=3, stride=1, dilation=1, groups=1, relu=True):
      super().__init__()
      pad = dilation * (k // 2)
      self.conv = nn.Conv2d(cin, cout, k, stride, pad, dilation, groups=groups, bias=False)
      self.bn = nn.BatchNorm2d(cout)
      self.relu = relu

    def forward(self, x):
      x = self.bn(self.conv(x))
      return torch.relu(x) if self.relu else x

  class DSConv(nn.Module):
    def __init__(self, cin, cout, stride, dilation):
      super().__init__()
      self.dw = ConvBN(cin, cin, 3, stride, dilation, groups=cin)
      self.pw = ConvBN(cin, cout, 1)

    def forward(self, x):
      return self.pw(self.dw(x))

  def unpool(x):
    b, c, h, w = x.shape
    y = x.new_zeros((b, c, 2 * h, 2 * w))
    y[:, :, ::2, ::2] = x
    return y

  class UpProj(nn.Module):
    def __init__(self, cin, cout, scale):
      super().__init__()
      self.scale = scale
      self.conv_a = nn.Conv2d(cin, cout, 5, padding=2, bias=False)
      self.bn_a = nn.BatchNorm2d(cout)
      self.conv_a2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
      self.bn_a2 = nn.BatchNorm2d(cout)
      self.conv_b = nn.Conv2d(cin, cout, 5, padding=2, bias=False)
      self.bn_b = nn.BatchNorm2d(cout)

    def forward(self, x):
      if self.scale == 2:
        x = unpool(x)
      a = torch.relu(self.bn_a(self.conv_a(x)))
      a = self.bn_a2(self.conv_a2(a))
      return torch.relu(a + self.bn_b(self.conv_b(x)))

  class UpProjCon(nn.Module):
    def __init__(self, cin, cout, scale, skip_channels):
      super().__init__()
      self.upproj = UpProj(cin, cout, scale)
      self.merge = ConvBN(cout + skip_channels + 3, cout, 3)

    def forward(self, x, skip, rgb):
      h, w = skip.shape[2], skip.shape[3]
      u = self.upproj(x)[:, :, :h, :w]
      z = F.adaptive_avg_pool2d(rgb, (h, w))
      return self.merge(torch.cat([u, skip, z], dim=1))

  class AMModule(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.atrous = nn.ModuleList(ConvBN(c, c, 3, 1, d) for d in _dilations(sam_k))
      self.fuse0 = ConvBN(c, c, 1)
      self.fuse1 = ConvBN(c, c, 1, relu=False)

    def forward(self, x):
      y = x
      for layer in self.atrous:
        y = layer(y)
      return torch.relu(self.fuse1(self.fuse0(y)) + x)

  class SAM(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.am = nn.ModuleList(AMModule(c) for _ in range(sam_modules))

    def forward(self, x):
      for m in self.am:
        x = m(x)
      return x

  enc_out = []  # output channels of encoder blocks 1-5
  for block in DS_ENCODER[variant]:
    enc_out.append(scaled(block[-1][1]))

  class Decoder(nn.Module):
    def __init__(self, out_channels):
      super().__init__()
      self.blocks = nn.ModuleList()
      c = enc_out[-1]
      for t, src in zip(DS_DECODER[variant], DS_SKIPS[variant], strict=True):
        if t == "sam":
          self.blocks.append(SAM(c))
          continue
        self.blocks.append(UpProjCon(c, c // 2, t, enc_out[src - 1]))
        c //= 2
      self.block5 = UpProj(c, max(1, c // 2), 2)
      self.output = nn.Conv2d(max(1, c // 2), out_channels, 3, padding=1)

    def forward(self, feats, rgb, out_hw):
      x = feats[-1]
      for block, src in zip(self.blocks, DS_SKIPS[variant], strict=True):
        x = block(x) if src is None else block(x, feats[src - 1], rgb)
      x = self.block5(x)[:, :, : out_hw[0], : out_hw[1]]
      return self.output(x)

  class DSSIDENetRef(nn.Module):
    def __init__(self):
      super().__init__()
      self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
      self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
      self.encoder = nn.ModuleList()
      cin = 3
      for block in DS_ENCODER[variant]:
        layers = nn.ModuleList()
        for kind, c, k, s, d in block:
          c = scaled(c)
          layers.append(ConvBN(cin, c, k, s, d) if kind == "conv" else DSConv(cin, c, s, d))
          cin = c
        self.encoder.append(layers)
      self.cls = Decoder(cls_channels)
      self.reg = Decoder(1)
      self.last_regression = None

    def forward(self, x):
      rgb = (x - self.mean) / self.std
      feats, y = [], rgb
      for layers in self.encoder:
        for layer in layers:
          y = layer(y)
        feats.append(y)
      out_hw = (x.shape[2], x.shape[3])
      self.last_regression = self.reg(feats, rgb, out_hw)
      return self.cls(feats, rgb, out_hw)

  return DSSIDENetRef()


def ds_sidenet_key_table(variant: str = "low", sam_k: int = 16, sam_modules: int = 3) -> list[Rule]:
  """Key table from :func:`build_ds_sidenet`'s state dict onto ``DSSIDENet`` variables."""
  table: list[Rule] = []

  def convbn(src: str, dst: str) -> None:
    table.append(Rule(f"{src}.conv.weight", f"{dst}/conv/kernel", "conv"))
    table.append(Rule(f"{src}.bn", f"{dst}/bn", "bn"))

  for b, block in enumerate(DS_ENCODER[variant]):
    for i, (kind, *_) in enumerate(block):
      src, dst = f"encoder.{b}.{i}", f"encoder/block{b + 1}_{i}"
      if kind == "conv":
        convbn(src, dst)
      else:
        convbn(f"{src}.dw", f"{dst}/dw")
        convbn(f"{src}.pw", f"{dst}/pw")

  def upproj(src: str, dst: str) -> None:
    for conv, bn in (("conv_a", "bn_a"), ("conv_a2", "bn_a2"), ("conv_b", "bn_b")):
      # conv_a / conv_b: our UpConv5 holds its 5x5 kernel directly as `kernel`.
      table.append(Rule(f"{src}.{conv}.weight", f"{dst}/{conv}/kernel", "conv"))
      table.append(Rule(f"{src}.{bn}", f"{dst}/{bn}", "bn"))

  for branch in ("cls", "reg"):
    for i, t in enumerate(DS_DECODER[variant]):
      src, dst = f"{branch}.blocks.{i}", f"{branch}/block{i + 1}"
      if t == "sam":
        for m in range(sam_modules):
          for j in range(len(_dilations(sam_k))):
            convbn(f"{src}.am.{m}.atrous.{j}", f"{dst}/am{m}/atrous{j}")
          for f in ("fuse0", "fuse1"):
            convbn(f"{src}.am.{m}.{f}", f"{dst}/am{m}/{f}")
        continue
      upproj(f"{src}.upproj", f"{dst}/upproj")
      convbn(f"{src}.merge", f"{dst}/merge")
    upproj(f"{branch}.block5", f"{branch}/block5")
    table.append(Rule(f"{branch}.output.weight", f"{branch}/output/kernel", "conv"))
    table.append(Rule(f"{branch}.output.bias", f"{branch}/output/bias", "copy"))
  return table


def build_cnn3d_s(widths: Sequence[int]):
  """PyTorch 3D CNN-S (docs/model_spec.md §1.3; sigmoid head, the code's 46x78 output for 192x320).

  Input: the RGB+OHESS volume (B, 1, D, H, W) (``semdepth_jax.models.ohess.rgb_ohess_volume``, D >= 12).

  Returns:
    An ``nn.Module`` mapping (B, 1, D, H, W) to (B, 1, H/4 - 2, W/4 - 2) sigmoid depth.
  """
  torch = refs._torch()
  nn = torch.nn
  F = torch.nn.functional

  class CNN3DSRef(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv, self.bn = nn.ModuleList(), nn.ModuleList()
      cin = 1
      for stage, w in enumerate(widths):
        for _ in range(2):
          self.conv.append(nn.Conv3d(cin, w, 3, padding=1))
          cin = w
        if stage < 2:
          self.bn.append(
            nn.BatchNorm3d(w, eps=refs.KERAS_BN_EPS, momentum=refs.KERAS_BN_TORCH_MOMENTUM)
          )
      self.out = nn.Conv3d(cin, 1, 3, padding=0)

    def forward(self, x):
      for i, conv in enumerate(self.conv):
        x = torch.relu(conv(x))
        if i in (1, 3):
          x = F.max_pool3d(self.bn[i // 2](x), 2)
      x = self.out(x).amax(dim=2)
      return torch.sigmoid(x)

  return CNN3DSRef()


def cnn3d_s_key_table() -> list[Rule]:
  """Key table from :func:`build_cnn3d_s`'s state dict onto ``CNN3DS`` variables."""
  table: list[Rule] = []
  for i in range(6):
    table.append(Rule(f"conv.{i}.weight", f"conv{i + 1}/kernel", "conv"))
    table.append(Rule(f"conv.{i}.bias", f"conv{i + 1}/bias", "copy"))
  table += [Rule("bn.0", "bn1", "bn"), Rule("bn.1", "bn2", "bn")]
  table += [Rule("out.weight", "out/kernel", "conv"), Rule("out.bias", "out/bias", "copy")]
  return table


MIN_VOLUME_DEPTH = 12
"""Depth the 3-D nets' input volume is zero-padded to (docs/model_spec.md §1.4 pools need >= 12 planes)."""


def build_ssegdepnet(
  num_classes: int,
  base_width: int,
  depth: int,
  dropout_rate: float,
  widths: Sequence[int],
  bottleneck_width: int,
  up_widths: Sequence[int],
  ohess_mode: str = "argmax",
):
  """PyTorch SSegDep-Net: U-Net -> OHESS -> 3D CNN-UP (docs/model_spec.md §1.5, our inference path).

  Args:
    num_classes: U-Net outputs = OHESS planes.
    base_width, depth, dropout_rate: of :func:`benchmarks.torch_references.build_unet`.
    widths, bottleneck_width, up_widths: of :func:`benchmarks.torch_references.build_cnn3d_up`.
    ohess_mode: ``'argmax'`` (one-hot of the arg-max class) or ``'threshold'`` (sigmoid > 0.5 per class).

  Returns:
    An ``nn.Module`` mapping (B, 3, H, W) RGB in [0, 1] to (B, 1, h, w) depth (metres, ReLU); the planes
    carry no gradient (both modes are step functions).

  Raises:
    ValueError: unknown ``ohess_mode``.
  """
  if ohess_mode not in ("argmax", "threshold"):
    raise ValueError(
      f"build_ssegdepnet: ohess_mode must be 'argmax' or 'threshold', got {ohess_mode!r}"
    )
  torch = refs._torch()
  nn = torch.nn
  F = torch.nn.functional

  class SSegDepNetRef(nn.Module):
    def __init__(self):
      super().__init__()
      self.unet = refs.build_unet(num_classes, base_width, depth, dropout_rate)
      self.depth_net = refs.build_cnn3d_up(widths, bottleneck_width, up_widths)

    def forward(self, x):
      logits = self.unet(x).detach()
      if ohess_mode == "argmax":
        planes = F.one_hot(logits.argmax(dim=1), num_classes).permute(0, 3, 1, 2).to(x.dtype)
      else:
        planes = (torch.sigmoid(logits) > 0.5).to(x.dtype)
      vol = torch.cat([x, planes], dim=1)  # (B, D, H, W): R, G, B, planes on the depth axis
      if vol.shape[1] < MIN_VOLUME_DEPTH:
        vol = F.pad(vol, (0, 0, 0, 0, 0, MIN_VOLUME_DEPTH - vol.shape[1]))
      return self.depth_net(vol[:, None])

  return SSegDepNetRef()


def ssegdepnet_key_table(depth: int) -> list[Rule]:
  """Key table from :func:`build_ssegdepnet`'s state dict onto ``SSegDepNet`` variables.

  The two paper-000 tables of ``benchmarks/torch_references.py`` under the prefixes ``unet`` and
  ``depth_net`` (our submodule names).
  """
  table = [Rule(f"unet.{r.source}", f"unet/{r.target}", r.kind) for r in refs.unet_key_table(depth)]
  table += [
    Rule(f"depth_net.{r.source}", f"depth_net/{r.target}", r.kind)
    for r in refs.cnn3d_up_key_table()
  ]
  return table


def liven(model, seed: int) -> None:
  """He-normal conv weights (std ``sqrt(2 / fan_in)``) and ``0.1 * N(0, 1)`` biases, in place.

  PyTorch's default conv init (variance ``1 / (3 fan_in)``) shrinks the signal by about 2x per ReLU
  layer; in a 4-channel 3-D net at 16x16 the output then no longer depends on the input at all (3D CNN-UP:
  exactly constant), and an equality check of such a net proves nothing. A transposed conv's fan-in is
  ``C_in * prod(K)`` (its weight is (C_in, C_out, *K)).
  """
  torch = refs._torch()
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.modules.conv._ConvNd):
        w = m.weight
        fan_in = w.shape[0] * w[0, 0].numel() if m.transposed else w[0].numel()
        w.copy_(torch.randn(w.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        if m.bias is not None:
          m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


def calibrate_batchnorm(model, x) -> None:
  """Sets every BatchNorm's running statistics to those of ``x`` (and its mirror image), in place.

  Running statistics far from the activations' (e.g. :func:`~benchmarks.torch_references.
  randomise_batchnorm`'s) turn each BN into a near-constant offset, so the output hardly depends on the
  input. The mirrored copy makes the batch at least 2, which BatchNorm needs on 1x1 maps. The affine
  parameters are kept; the model is left in eval mode.
  """
  torch = refs._torch()
  bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
  momenta = [m.momentum for m in bns]
  for m in bns:
    m.momentum = None  # cumulative average: one batch sets the statistics exactly
    m.reset_running_stats()
  model.train()
  try:
    with torch.no_grad():
      model(torch.cat([x, x.flip(-1)]))
  finally:
    for m, momentum in zip(bns, momenta, strict=True):
      m.momentum = momentum
    model.eval()


def centre_unet_logits(unet, x) -> None:
  """Shifts the U-Net's output bias so each class's logit has mean 0 over ``x``, in place.

  With random weights one class otherwise wins the arg-max at every pixel and the OHESS planes are
  constant, so SSegDep-Net's check would not see the U-Net -> OHESS path.
  """
  torch = refs._torch()
  with torch.no_grad():
    unet.eval()
    unet.out.bias.sub_(unet(x).mean(dim=(0, 2, 3)))
