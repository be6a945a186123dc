"""PyTorch references of paper 000's networks (U-Net, SCRX, 3D CNN-UP) and their key tables onto ours.

Written from docs/model_spec.md §1.1 (U-Net), §1.2 (SCRX), §1.4 (3D CNN-UP) and the layer tables in
``semdepth_jax/models/unet.py`` / ``scrx.py`` / ``cnn3d.py``; no upstream PyTorch code exists for these Keras models.
Layer by layer (NCHW here, NHWC in the library):

* Keras BatchNormalization = ``nn.BatchNorm2d(eps=1e-3, momentum=0.01)`` (Keras momentum 0.99 is the
  weight of the old running value; PyTorch's momentum is the weight of the new one), per channel like ours.
* Keras ``'same'`` 3x3 stride-1 convolution = ``padding=1``; 2x2 max-pool = ``nn.MaxPool2d(2)`` (floor).
* Keras ``Conv2DTranspose(3, strides=2, padding='same')`` = ``nn.ConvTranspose2d(3, stride=2, padding=0)``
  cropped to the first ``2n`` rows and columns (the library pads the dilated input by (2, 1); PyTorch's
  ``padding=0`` pads it by (2, 2) and gives ``2n + 1``). Our kernel (kh, kw, C_in, C_out) is applied
  without flipping (``lax.conv_transpose(transpose_kernel=False)``), PyTorch's ConvTranspose2d weight
  (C_in, C_out, kh, kw) is the gradient of a convolution, i.e. flipped: :func:`state_for_key_table` flips
  it and swaps its first two axes so the key table's ``conv`` rule applies.

The weights go through the library's weight converter (``semdepth_jax.weights.keymap.apply_key_table``,
strict: every key used, every target leaf filled), the same path as ``semdepth convert-weights``.
Used by ``benchmarks/compare.py`` and ``tests/test_compare_smoke.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from semdepth_jax.weights.keymap import Rule, normalise_state_dict

KERAS_BN_EPS = 1e-3
KERAS_BN_TORCH_MOMENTUM = 0.01


def _torch():
  import torch

  return torch


def _bn(c: int):
  nn = _torch().nn
  return nn.BatchNorm2d(c, eps=KERAS_BN_EPS, momentum=KERAS_BN_TORCH_MOMENTUM)


def build_unet(num_classes: int, base_width: int, depth: int, dropout_rate: float):
  """PyTorch U-Net of ``semdepth_jax.models.unet.UNet`` (same attributes); input NCHW [0, 1] RGB.

  Returns:
    An ``nn.Module`` whose forward maps (B, 3, H, W) to pre-sigmoid logits (B, num_classes, H, W).
  """
  torch = _torch()
  nn = torch.nn

  class Block(nn.Module):
    def __init__(self, cin: int, cout: int):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, padding=1), _bn(cout)
      self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, padding=1), _bn(cout)

    def forward(self, x):
      x = torch.relu(self.bn1(self.conv1(x)))
      return torch.relu(self.bn2(self.conv2(x)))

  class UNetRef(nn.Module):
    def __init__(self):
      super().__init__()
      widths = [base_width * 2**i for i in range(depth + 1)]
      cin = 3
      self.enc = nn.ModuleList()
      for w in widths[:-1]:
        self.enc.append(Block(cin, w))
        cin = w
      self.bottleneck = Block(cin, widths[-1])
      self.ups, self.dec = nn.ModuleList(), nn.ModuleList()
      for w in reversed(widths[:-1]):
        self.ups.append(nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=0))
        self.dec.append(Block(2 * w, w))
      self.out = nn.Conv2d(base_width, num_classes, 1)
      self.drop_first = nn.Dropout(dropout_rate * 0.5)
      self.drop = nn.Dropout(dropout_rate)

    def forward(self, x):
      skips = []
      for i, block in enumerate(self.enc):
        x = block(x)
        skips.append(x)
        x = torch.nn.functional.max_pool2d(x, 2)
        x = self.drop_first(x) if i == 0 else self.drop(x)
      x = self.bottleneck(x)
      for up, block, skip in zip(self.ups, self.dec, reversed(skips), strict=True):
        h, w = x.shape[2], x.shape[3]
        x = up(x)[:, :, : 2 * h, : 2 * w]
        x = self.drop(torch.cat([x, skip], dim=1))
        x = block(x)
      return self.out(x)

  return UNetRef()


def unet_key_table(depth: int) -> list[Rule]:
  """Key table from :func:`build_unet`'s state dict onto ``UNet`` variables (names ``c*``, ``u*``)."""
  table: list[Rule] = []

  def block(src: str, dst: str) -> None:
    for i in (1, 2):
      table.append(Rule(f"{src}.conv{i}.weight", f"{dst}/conv{i}/conv/kernel", "conv"))
      table.append(Rule(f"{src}.conv{i}.bias", f"{dst}/conv{i}/conv/bias", "copy"))
      table.append(Rule(f"{src}.bn{i}", f"{dst}/conv{i}/bn", "bn"))

  for i in range(depth):
    block(f"enc.{i}", f"c{i + 1}")
  block("bottleneck", f"c{depth + 1}")
  for j in range(depth):
    idx = depth + 2 + j
    table.append(Rule(f"ups.{j}.weight", f"u{idx}/kernel", "conv"))
    table.append(Rule(f"ups.{j}.bias", f"u{idx}/bias", "copy"))
    block(f"dec.{j}", f"c{idx}")
  table.append(Rule("out.weight", "out/kernel", "conv"))
  table.append(Rule("out.bias", "out/bias", "copy"))
  return table


def build_scrx(widths: Sequence[int], refine_widths: Sequence[int]):
  """PyTorch SCRX (RGB input, sigmoid head, the code's 'valid' head without upsampling; model_spec §1.2).

  Returns:
    An ``nn.Module`` mapping (B, 3, H, W) to (B, 1, H/4 - 2, W/4 - 2) sigmoid depth.
  """
  torch = _torch()
  nn = torch.nn
  F = torch.nn.functional

  class Residual(nn.Module):
    def __init__(self, cin: int, cout: int):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, padding=1), _bn(cout)
      self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, padding=1), _bn(cout)
      self.shortcut_conv, self.shortcut_bn = nn.Conv2d(cin, cout, 1), _bn(cout)

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(torch.relu(x))))
      y = self.bn2(self.conv2(y))
      return torch.relu(self.shortcut_bn(self.shortcut_conv(x)) + y)

  class SCRXRef(nn.Module):
    def __init__(self):
      super().__init__()
      self.res = nn.ModuleList()
      cin = 3
      for w in widths:
        self.res.append(Residual(cin, w))
        cin = w
      self.global_depth = nn.Conv2d(cin, 1, 3, padding=1)
      self.refine = nn.ModuleList()
      self.refine_bn = nn.ModuleList()
      cin = 3
      for w in refine_widths:
        self.refine.append(nn.Conv2d(cin, w, 3, padding=1))
        self.refine_bn.append(_bn(w))
        cin = w
      self.head = nn.Conv2d(refine_widths[-1] + 1, 1, 3, padding=0)

    def forward(self, x):
      main = x
      for i, block in enumerate(self.res):
        main = block(main)
        if i < 2:
          main = F.max_pool2d(main, 2)
      main = torch.sigmoid(self.global_depth(main))
      ref = x
      for conv, bn in zip(self.refine, self.refine_bn, strict=True):
        ref = F.max_pool2d(bn(torch.relu(conv(ref))), 2)
      return torch.sigmoid(self.head(torch.cat([main, ref], dim=1)))

  return SCRXRef()


def scrx_key_table(widths: Sequence[int], refine_widths: Sequence[int]) -> list[Rule]:
  """Key table from :func:`build_scrx`'s state dict onto ``SCRX`` variables."""
  table: list[Rule] = []
  for i in range(len(widths)):
    for name in ("conv1", "conv2", "shortcut_conv"):
      table.append(Rule(f"res.{i}.{name}.weight", f"res{i + 1}/{name}/kernel", "conv"))
      table.append(Rule(f"res.{i}.{name}.bias", f"res{i + 1}/{name}/bias", "copy"))
    for name in ("bn1", "bn2", "shortcut_bn"):
      table.append(Rule(f"res.{i}.{name}", f"res{i + 1}/{name}", "bn"))
  for i in range(len(refine_widths)):
    table.append(Rule(f"refine.{i}.weight", f"refine{i + 1}/conv/kernel", "conv"))
    table.append(Rule(f"refine.{i}.bias", f"refine{i + 1}/conv/bias", "copy"))
    table.append(Rule(f"refine_bn.{i}", f"refine{i + 1}/bn", "bn"))
  for name in ("global_depth", "head"):
    table.append(Rule(f"{name}.weight", f"{name}/kernel", "conv"))
    table.append(Rule(f"{name}.bias", f"{name}/bias", "copy"))
  return table


def build_cnn3d_up(widths: Sequence[int], bottleneck_width: int, up_widths: Sequence[int]):
  """PyTorch 3D CNN-UP (model_spec §1.4; ReLU head, metres, no dropout, the code's output size).

  Input: the RGB+OHESS volume (B, 1, D, H, W) (``semdepth_jax.models.ohess.rgb_ohess_volume``, D >= 12).
  Keras ``Conv3DTranspose(3, strides=(1, 2, 2), padding='same')`` = ``ConvTranspose3d(3, stride=(1, 2, 2),
  padding=(1, 0, 0))`` cropped to ``2n`` in H and W (depth: stride 1, 'same' = padding 1).

  Returns:
    An ``nn.Module`` mapping (B, 1, D, H, W) to (B, 1, h, w) depth (metres, ReLU).
  """
  torch = _torch()
  nn = torch.nn
  F = torch.nn.functional

  def bn3(c: int):
    return nn.BatchNorm3d(c, eps=KERAS_BN_EPS, momentum=KERAS_BN_TORCH_MOMENTUM)

  class CNN3DUPRef(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv, self.bn = nn.ModuleList(), nn.ModuleList()
      cin = 1
      for w in widths:
        for _ in range(2):
          self.conv.append(nn.Conv3d(cin, w, 3, padding=1))
          self.bn.append(bn3(w))
          cin = w
      self.conv7 = nn.Conv3d(cin, bottleneck_width, 3, padding=0)
      self.bn_pool = bn3(bottleneck_width)
      self.deconv, self.bn_d = nn.ModuleList(), nn.ModuleList()
      cin = bottleneck_width
      for w in (*up_widths, 1):
        self.deconv.append(nn.ConvTranspose3d(cin, w, 3, stride=(1, 2, 2), padding=(1, 0, 0)))
        cin = w
      for w in up_widths:
        self.bn_d.append(bn3(w))

    def forward(self, x):
      for i, (conv, bn) in enumerate(zip(self.conv, self.bn, strict=True)):
        x = bn(torch.relu(conv(x)))
        if i in (1, 3):
          x = F.max_pool3d(x, 2)
      x = torch.relu(self.conv7(x))
      x = self.bn_pool(F.max_pool3d(x, (x.shape[2], 2, 2)))
      for i, deconv in enumerate(self.deconv):
        h, w = x.shape[3], x.shape[4]
        x = deconv(x)[:, :, :, : 2 * h, : 2 * w]
        x = torch.relu(x)
        if i < len(self.bn_d):
          x = self.bn_d[i](x)
      return x[:, :, 0]

  return CNN3DUPRef()


def cnn3d_up_key_table(num_up: int = 2) -> list[Rule]:
  """Key table from :func:`build_cnn3d_up`'s state dict onto ``CNN3DUP`` variables."""
  table: list[Rule] = []
  for i in range(6):
    table += [
      Rule(f"conv.{i}.weight", f"conv{i + 1}/kernel", "conv"),
      Rule(f"conv.{i}.bias", f"conv{i + 1}/bias", "copy"),
      Rule(f"bn.{i}", f"bn{i + 1}", "bn"),
    ]
  table += [
    Rule("conv7.weight", "conv7/kernel", "conv"),
    Rule("conv7.bias", "conv7/bias", "copy"),
    Rule("bn_pool", "bn_pool", "bn"),
  ]
  for i in range(num_up + 1):
    table.append(Rule(f"deconv.{i}.weight", f"deconv{i + 1}/kernel", "conv"))
    table.append(Rule(f"deconv.{i}.bias", f"deconv{i + 1}/bias", "copy"))
  for i in range(num_up):
    table.append(Rule(f"bn_d.{i}", f"bn_d{i + 1}", "bn"))
  return table


def randomise_batchnorm(model: Any, seed: int) -> None:
  """Random BN affine parameters and running statistics (so an eval-mode check tests all four)."""
  torch = _torch()
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        c = m.num_features
        m.weight.copy_(0.5 + 0.5 * torch.rand(c, generator=g))
        m.bias.copy_(0.1 * torch.randn(c, generator=g))
        m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
        m.running_var.copy_(0.5 + torch.rand(c, generator=g))


def state_for_key_table(
  model: Any, transposed_prefixes: Sequence[str] = ()
) -> dict[str, np.ndarray]:
  """The model's state dict as numpy, ConvTranspose2d weights rewritten for the ``conv`` rule.

  A ConvTranspose2d/3d weight (C_in, C_out, *K) becomes ``flip(w, spatial axes)`` with its first two axes
  swapped, i.e. the (O, I, *K) layout of a forward convolution whose ``conv`` conversion is our unflipped
  (*K, C_in, C_out) kernel (see the module docstring).
  """
  state = normalise_state_dict(model.state_dict())
  out: dict[str, np.ndarray] = {}
  for k, v in state.items():
    if any(k.startswith(p) for p in transposed_prefixes) and k.endswith(".weight") and v.ndim >= 4:
      flipped = v[(slice(None), slice(None)) + (slice(None, None, -1),) * (v.ndim - 2)]
      v = np.ascontiguousarray(np.swapaxes(flipped, 0, 1))
    out[k] = v
  return out


def nchw(x: np.ndarray, torch_mod: Any) -> Any:
  """NHWC numpy -> NCHW torch tensor (a copy)."""
  return torch_mod.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def nhwc(t: Any) -> np.ndarray:
  """NCHW torch tensor -> NHWC numpy."""
  return t.detach().float().cpu().numpy().transpose(0, 2, 3, 1)


def flat_shapes(variables: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
  """``collection/path -> shape`` of a variables tree (for messages)."""
  from semdepth_jax.weights.keymap import flatten

  return {f"{c}/{p}": tuple(v.shape) for c, t in variables.items() for p, v in flatten(t).items()}
