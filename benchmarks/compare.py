"""Side-by-side speed of this library (JAX) and PyTorch on the same architectures, weights and inputs.

For every requested registered family with a PyTorch reference (:data:`PAIR_BUILDERS`;
``benchmarks/torch_references.py``: paper 000's U-Net, SCRX and 3D CNN-UP, written from
docs/model_spec.md §1.1, §1.2, §1.4; ``benchmarks/torch_references_001_002.py``: paper 001's
DeepLab-VGG, DepthNet, HybridNet A1 / A2 and paper 002's DeepLab-v2 ResNet-101 with its segmentation /
depth-bin / regression head, §2, §3.1; ``benchmarks/torch_references_004.py``: paper 000's 3D CNN-S and
SSegDep-Net, §1.3, §1.5, and paper 004's DS-SIDENet, §5.1-§5.2; paper 003's Semantic-MD baseline is
segmentation_models_pytorch's own ``Unet('tu-efficientnet_b4')``), in one process:

1. build both models; the PyTorch one gets random weights (BatchNorm affine parameters and running
   statistics randomised too; papers 001 / 002: each convolution and linear layer rescaled to unit output
   RMS on the input, ``calibrate_scales``, so Caffe-range inputs give O(1) outputs; the 3-D nets,
   SSegDep-Net and Semantic-MD: running statistics of the input (and He-initialised convs for the 3-D
   nets, ``torch_references_004.liven`` / ``calibrate_batchnorm``), without which their output hardly
   depends on the input) and they go into our variables through the weight converter's key table
   (``semdepth_jax.weights.keymap.apply_key_table``, strict);
2. check that both give the same output on one input in inference mode: ``max |jax - torch| <= 1e-4 *
   max(1, max |torch|)`` and a non-zero output, in full float32 (TF32 off in both for the check). A
   model that fails is reported as ``mismatch`` and never timed;
3. compile the JAX step (``jitted.lower(...).compile()``: compile time; XLA's FLOP count from
   ``benchmarks/xla_flops.py``, the same on every device), warm up both, then alternate one JAX step and one PyTorch step ``--repeats``
   times (load changes on a shared machine hit both alike) and report the median and min-max per step.

``--mode train``: the library's train step (``semdepth_jax.train.step.make_train_step``, SGD with
momentum 0.9, loss ``mean(output ** 2)`` of the model's main output, BatchNorm in training mode, dropout
on) against PyTorch ``zero_grad; forward; loss.backward(); optimizer.step()``. ``--mode infer``: jitted
``apply(train=False)`` against ``model.eval()`` under ``torch.inference_mode()``. ``--dtype bf16``: the
library's mixed precision (``compute_dtype='bfloat16'``: float32 parameters, bfloat16 compute) against
``torch.autocast(dtype=torch.bfloat16)``; the equality check stays in float32.

Reported per model: ``jax_s`` / ``torch_s`` (median seconds per step and [min, max]), ``ratio`` =
PyTorch median / JAX median (> 1: JAX is faster), ``jax_compile_s``, ``flops`` (XLA's HLO cost analysis of the
step as lowered for the host CPU, ``benchmarks/xla_flops.py``: the compiled module's count misses cuDNN
convolutions on GPUs), ``max_rss_mib`` (``resource.getrusage(RUSAGE_SELF)
.ru_maxrss`` after the model ran: the *process's* peak resident memory so far, both frameworks together,
monotone over the run, so only the first model's value is its own), on GPUs also the device peaks
(``jax_peak_mib`` from ``memory_stats()['peak_bytes_in_use']``, cumulative like RSS;
``torch_peak_mib`` from ``torch.cuda.max_memory_allocated``, reset per model), and
``torch_compile_s`` with ``--torch-compile`` (the error when ``torch.compile`` fails), and with
``--variants eigen,dwconv,pointwise,volume`` the JAX step of those configurations (:data:`VARIANTS`) timed in the same
alternation, each with its own ratio: the before/after columns of a speed change. Families without a
PyTorch reference are listed with status ``no reference`` and the reason.

  python benchmarks/compare.py --models all --mode train --smoke       # CPU, seconds, tiny widths
  python benchmarks/compare.py --models unet,scrx --mode train --batch 2 --size 192,320 --threads 2 \
      --repeats 10 --out results/compare_cpu

Timings from a loaded machine are not results; run on a quiet one. Needs the ``parity`` extra (torch).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

TOL = 1e-4
"""Equality tolerance: ``max |jax - torch| <= TOL * max(1, max |torch|)`` in inference mode, float32."""

PAPER_SIZE = {
  "unet": (192, 320),
  "scrx": (192, 320),
  "cnn3d_up": (192, 320),
  "deeplab_vgg": (320, 320),
  "depthnet": (320, 320),
  "hybridnet_a1": (320, 320),
  "hybridnet_a2": (320, 320),
  "deeplab_v2": (420, 800),
  "deeplab_sid": (420, 800),
  "deeplab_regression": (420, 800),
  "semantic_md": (256, 256),
  "cnn3d_s": (192, 320),
  "ssegdepnet": (192, 320),
  "ds_sidenet": (240, 320),
}
"""The paper's training input size (H, W) per family (docs/model_spec.md §1; paper 001's 320 x 320 crops,
``configs/hybridnet.py``; paper 002's 420 x 800 crops, ``configs/deeplab_sid.py``; paper 003's 256 x 256,
§4.5; paper 004's ScanNet 320 x 240, §5.4)."""

SMOKE_SIZE = {"semantic_md": (64, 64)}
"""``--smoke`` input size where 16x16 does not fit: smp U-Nets need H, W divisible by 32, and at 32x32
(1x1 bottom features, batch-statistics BatchNorm) the random EfficientNet saturates the sigmoid."""

NO_REFERENCE: dict[str, str] = {}
"""Registered families without a whole-model PyTorch reference here, with the reason."""


@dataclasses.dataclass
class Pair:
  """One family's two implementations with the same weights.

  Attributes:
    name: registry name.
    model: our linen module.
    variables: its variables (converted from the PyTorch model's state dict).
    torch_model: the PyTorch reference.
    output_key: our output compared and trained (``seg_logits`` / ``depth``).
    torch_to_ours: maps the reference's raw output to our output's layout (NHWC numpy).
    attributes: the model attributes used (for the report).
    torch_input: ``(image NHWC, labels (B, H, W)) -> the reference's input tensor`` (CPU).
    num_classes: labels are drawn below it.
  """

  name: str
  model: Any
  variables: dict
  torch_model: Any
  output_key: str
  torch_to_ours: Callable[[Any], np.ndarray]
  attributes: dict
  torch_input: Callable[[np.ndarray, np.ndarray], Any]
  num_classes: int = 3


def _convert(name, model, torch_model, table, image, transposed=(), labels=None):
  import jax

  import benchmarks.torch_references as refs
  from semdepth_jax.weights.keymap import apply_key_table

  kw = {} if labels is None else {"labels": labels}
  target = jax.eval_shape(lambda: model.init(jax.random.key(0), image, train=False, **kw))
  state = refs.state_for_key_table(torch_model, transposed)
  return apply_key_table(state, table, target, where=f"PyTorch reference of {name}")


def _pair_unet(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  import benchmarks.torch_references as refs
  from semdepth_jax.models import get_model

  attrs = (
    {"num_classes": 3, "base_width": 4, "depth": 1, "dropout_rate": 0.05}
    if smoke
    else {"num_classes": 14, "base_width": 64, "depth": 4, "dropout_rate": 0.05}
  )
  model = get_model("unet", **attrs)
  ref = refs.build_unet(**attrs)
  refs.randomise_batchnorm(ref, seed + 1)
  variables = _convert("unet", model, ref, refs.unet_key_table(attrs["depth"]), image, ("ups.",))
  return Pair("unet", model, variables, ref, "seg_logits", refs.nhwc, attrs, _image_input)


def _pair_scrx(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  import benchmarks.torch_references as refs
  from semdepth_jax.models import get_model

  attrs = (
    {"widths": (4, 4, 4), "refine_widths": (4, 3)}
    if smoke
    else {"widths": (128, 64, 32, 16), "refine_widths": (128, 63)}
  )
  model = get_model("scrx", use_ohess=False, **attrs)
  ref = refs.build_scrx(**attrs)
  refs.randomise_batchnorm(ref, seed + 1)
  table = refs.scrx_key_table(attrs["widths"], attrs["refine_widths"])
  variables = _convert("scrx", model, ref, table, image)
  attrs = {"use_ohess": False, **attrs}
  return Pair("scrx", model, variables, ref, "depth", refs.nhwc, attrs, _image_input)


def _pair_cnn3d_up(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  import torch

  import benchmarks.torch_references as refs
  import benchmarks.torch_references_004 as refs4
  from semdepth_jax.models import get_model

  width = 4 if smoke else 64
  attrs = {
    "num_classes": 3 if smoke else 14,
    "widths": (width,) * 3,
    "bottleneck_width": width,
    "up_widths": (width,) * 2,
  }
  model = get_model("cnn3d_up", **attrs)
  ref = refs.build_cnn3d_up(attrs["widths"], attrs["bottleneck_width"], attrs["up_widths"])
  # PyTorch's default init and random BN statistics left the output independent of the input.
  refs4.liven(ref, seed + 2)
  refs.randomise_batchnorm(ref, seed + 1)
  labels = np.zeros(image.shape[:3], np.int32)
  refs4.calibrate_batchnorm(ref, _volume_input(attrs)(image, labels))
  with (
    torch.no_grad()
  ):  # a positive head bias keeps the ReLU output alive (else the check is vacuous)
    ref.deconv[-1].bias.fill_(0.5)
  table = refs.cnn3d_up_key_table()
  variables = _convert("cnn3d_up", model, ref, table, image, ("deconv.",), labels)
  return Pair("cnn3d_up", model, variables, ref, "depth", refs.nhwc, attrs, _volume_input(attrs), 3)


def _pair_semantic_md(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  """Semantic-MD baseline (paper 003) against ``smp.Unet('tu-efficientnet_b4', classes=1, sigmoid)``.

  The R3 reference model itself (segmentation_models_pytorch, from the ``parity`` extra), converted with
  the library's ``semantic_md.smp_key_table``; EfficientNet-B0 with ``smoke``. Its BatchNorm layers get
  random affine parameters and running statistics equal to the batch statistics of ``image`` (random
  running statistics would saturate the sigmoid head through 32 MBConv blocks and make the check weak).
  Compared output: ``depth`` in [0, 1] (the sigmoid, before the 15 m scale).
  """
  import segmentation_models_pytorch as smp  # the parity extra
  import torch

  import benchmarks.torch_references as refs
  from semdepth_jax.models import get_model
  from semdepth_jax.models.semantic_md import smp_key_table

  arch = "efficientnet_b0" if smoke else "efficientnet_b4"
  ref = smp.Unet(f"tu-{arch}", encoder_weights=None, classes=1, activation="sigmoid")
  model = get_model("semantic_md", encoder={"name": arch})
  g = torch.Generator().manual_seed(seed + 1)
  bns = [m for m in ref.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
  with torch.no_grad():
    for m in bns:
      m.weight.copy_(0.2 + 0.3 * torch.rand(m.num_features, generator=g))
      m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
      m.momentum = 1.0
    ref.train()
    ref(_normalised_input(image, None))
    for m in bns:
      m.momentum = 0.1
  ref.eval()
  variables = _convert("semantic_md", model, ref, smp_key_table(model), image)
  attrs = {
    "encoder": arch,
    "decoder_channels": [256, 128, 64, 32, 16],
    "depth_activation": "sigmoid",
  }
  return Pair("semantic_md", model, variables, ref, "depth", refs.nhwc, attrs, _normalised_input)


def _normalised_input(image: np.ndarray, labels: np.ndarray | None) -> Any:
  """ImageNet-normalised NCHW tensor: what smp/timm models receive (ours normalise [0, 1] RGB inside)."""
  import torch

  import benchmarks.torch_references as refs
  from semdepth_jax.models.backbones import IMAGENET

  del labels
  mean, std = np.asarray(IMAGENET.mean, np.float32), np.asarray(IMAGENET.std, np.float32)
  return refs.nchw((np.asarray(image, np.float32) - mean) / std, torch)


_PAPER002_HEADS = {
  "deeplab_v2": ("aspp_seg", "seg_logits"),
  "deeplab_sid": ("aspp_bins", "depth_logits"),
  "deeplab_regression": ("aspp_depth", "depth"),
}
"""Paper 002 family -> (its ASPP head, the output compared and trained)."""


def _pair_paper002(name: str, smoke: bool, image: np.ndarray, seed: int) -> Pair:
  """DeepLab-v2 ResNet-101 (docs/model_spec.md §3.1) with the family's one head.

  Compared output: ``seg_logits`` (deeplab_v2), ``depth_logits`` over the bins (deeplab_sid) or ``depth``
  in metres (deeplab_regression), all upsampled to the input size. Paper: the registry defaults
  (ResNet-101, rates 6/12/18/24, K = 71 SID bins, 21 classes). Smoke: ResNet depths (1, 1, 1, 1) at full
  widths (torchvision's ResNet fixes the widths), rates 1-4 (the stride-8 map of a 16 x 16 input is 3 x 3),
  8 bins, 3 classes.
  """
  import torch

  import benchmarks.torch_references as refs
  import benchmarks.torch_references_001_002 as refs2
  from semdepth_jax.models import get_model

  depths, rates = ((1, 1, 1, 1), (1, 2, 3, 4)) if smoke else ((3, 4, 23, 3), (6, 12, 18, 24))
  attrs: dict[str, Any] = {"num_classes": 3} if smoke else {}
  if smoke:
    attrs.update(backbone={"name": "resnet101_deeplab", "depths": depths}, aspp_rates=rates)
    if name == "deeplab_sid":
      attrs["depth_bins"] = ("sid", 1.0, 80.0, 8)
  model = get_model(name, **attrs)
  head, key = _PAPER002_HEADS[name]
  if head == "aspp_bins":
    channels = model.num_depth_classes
  else:
    channels = model.num_classes if head == "aspp_seg" else 1
  ref = refs2.build_deeplab_v2({head: channels}, depths, rates)
  refs2.randomise_frozen_batchnorm(ref, seed + 1)
  refs2.calibrate_scales(ref, refs.nchw(image[:1, :64, :64], torch))
  table = refs2.deeplab_v2_key_table([head], depths, rates)
  variables = _convert(name, model, ref, table, image)
  return Pair(name, model, variables, ref, key, refs.nhwc, attrs, _image_input)


_PAPER001_SMOKE = {
  "backbone": {"widths": ((2, 2), (3, 3), (4, 4, 4), (5, 5, 5), (6, 6, 6))},
  "aspp": {"width": 6, "rates": (1, 2, 3, 4)},
  "global_net": {"widths": (3, 4, 4, 4, 3), "fc_hidden": 5},
  "gradient_net": {"widths": (3, 4, 4, 4, 3)},
  "refine": {"conv1_width": 3, "widths": (4, 4, 4)},
}
"""Tiny sub-network widths of the paper-001 families with ``smoke`` (like ``tests/test_export.py``)."""

_PAPER001_PARTS = {
  "deeplab_vgg": ("backbone", "aspp"),
  "depthnet": ("global_net", "gradient_net", "refine"),
  "hybridnet_a1": ("backbone", "aspp", "refine"),
  "hybridnet_a2": ("backbone", "aspp", "global_net", "refine"),
}


def _pair_paper001(name: str, smoke: bool, image: np.ndarray, seed: int) -> Pair:
  """Paper 001's networks (docs/model_spec.md §2.1-§2.4), Caffe BGR input, linear metres depth.

  Compared output: ``seg_logits`` (deeplab_vgg) or ``depth`` (the others; HybridNet's segmentation head
  is not run by either side, see ``benchmarks/torch_references_001_002.py``), at the input size in
  inference mode. Paper: the registry defaults (= ``configs/hybridnet.py`` ``size=paper``: VGG16, ASPP-L
  1024 wide, the literal 41 x 41 x 256 global FC, 19 classes for HybridNet, 21 for DeepLab-VGG).
  """
  import torch

  import benchmarks.torch_references as refs
  import benchmarks.torch_references_001_002 as refs2
  from semdepth_jax.models import get_model

  attrs: dict[str, Any] = {}
  if smoke:
    attrs = {k: _PAPER001_SMOKE[k] for k in _PAPER001_PARTS[name]}
    if name != "depthnet":
      attrs["num_classes"] = 3
  model = get_model(name, **attrs)
  ref = refs2.build_paper001(name, attrs, image.shape[1:3])
  refs2.calibrate_scales(ref, refs.nchw(image[:1], torch))
  table = refs2.paper001_key_table(name, attrs)
  variables = _convert(name, model, ref, table, image)
  key = "seg_logits" if name == "deeplab_vgg" else "depth"
  return Pair(name, model, variables, ref, key, refs.nhwc, attrs, _image_input)


def _pair_deeplab_vgg(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  """deeplab_vgg (paper 001): see :func:`_pair_paper001`."""
  return _pair_paper001("deeplab_vgg", smoke, image, seed)


def _pair_depthnet(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  """depthnet (paper 001): see :func:`_pair_paper001`."""
  return _pair_paper001("depthnet", smoke, image, seed)


def _pair_hybridnet_a1(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  """hybridnet_a1 (paper 001): see :func:`_pair_paper001`."""
  return _pair_paper001("hybridnet_a1", smoke, image, seed)


def _pair_hybridnet_a2(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  """hybridnet_a2 (paper 001): see :func:`_pair_paper001`."""
  return _pair_paper001("hybridnet_a2", smoke, image, seed)


def _pair_deeplab_v2(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  """deeplab_v2 (paper 002): see :func:`_pair_paper002`."""
  return _pair_paper002("deeplab_v2", smoke, image, seed)


def _pair_deeplab_sid(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  """deeplab_sid (paper 002): see :func:`_pair_paper002`."""
  return _pair_paper002("deeplab_sid", smoke, image, seed)


def _pair_deeplab_regression(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  """deeplab_regression (paper 002): see :func:`_pair_paper002`."""
  return _pair_paper002("deeplab_regression", smoke, image, seed)


def _pair_cnn3d_s(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  import benchmarks.torch_references as refs
  import benchmarks.torch_references_004 as refs4
  from semdepth_jax.models import get_model

  attrs = {"num_classes": 3 if smoke else 14, "widths": (4, 4, 4) if smoke else (64, 64, 128)}
  model = get_model("cnn3d_s", **attrs)
  ref = refs4.build_cnn3d_s(attrs["widths"])
  refs4.liven(ref, seed + 2)
  refs.randomise_batchnorm(ref, seed + 1)
  labels = np.zeros(image.shape[:3], np.int32)
  refs4.calibrate_batchnorm(ref, _volume_input(attrs)(image, labels))
  table = refs4.cnn3d_s_key_table()
  variables = _convert("cnn3d_s", model, ref, table, image, (), labels)
  return Pair("cnn3d_s", model, variables, ref, "depth", refs.nhwc, attrs, _volume_input(attrs), 3)


def _pair_ssegdepnet(smoke: bool, image: np.ndarray, seed: int, ohess_mode: str = "argmax") -> Pair:
  """U-Net -> OHESS -> 3D CNN-UP; the depth output is compared (the planes carry no gradient).

  ``ohess_mode='argmax'`` by default rather than the model's per-class ``'threshold'`` (also supported):
  a plane flips where two implementations put a logit on different sides of the decision, and an
  arg-max has one decision per pixel instead of one per class, so near-ties (which make the depth differ
  by far more than TOL) are rarer at paper widths.
  """
  import torch

  import benchmarks.torch_references as refs
  import benchmarks.torch_references_004 as refs4
  from semdepth_jax.models import get_model

  unet = {"base_width": 4, "depth": 1} if smoke else {"base_width": 64, "depth": 4}
  unet["dropout_rate"] = 0.05
  width = 4 if smoke else 64
  depth_net = {"widths": (width,) * 3, "bottleneck_width": width, "up_widths": (width,) * 2}
  num_classes = 3 if smoke else 14
  attrs = {
    "num_classes": num_classes,
    "ohess_mode": ohess_mode,
    "unet": unet,
    "depth_net": depth_net,
  }
  model = get_model("ssegdepnet", **attrs)
  ref = refs4.build_ssegdepnet(num_classes, **unet, **depth_net, ohess_mode=ohess_mode)
  refs4.liven(ref, seed + 2)
  refs.randomise_batchnorm(ref, seed + 1)
  x = refs.nchw(image, torch)
  refs4.calibrate_batchnorm(ref, x)
  # Else one class wins everywhere and the planes are constant.
  refs4.centre_unet_logits(ref.unet, x)
  with torch.no_grad():  # a positive head bias keeps the ReLU output alive (as for cnn3d_up)
    ref.depth_net.deconv[-1].bias.fill_(0.5)
  table = refs4.ssegdepnet_key_table(unet["depth"])
  transposed = ("unet.ups.", "depth_net.deconv.")
  variables = _convert("ssegdepnet", model, ref, table, image, transposed)
  return Pair("ssegdepnet", model, variables, ref, "depth", refs.nhwc, attrs, _image_input, 3)


def _pair_ds_sidenet(smoke: bool, image: np.ndarray, seed: int) -> Pair:
  """DS-SIDENet, low range, both branches (registry defaults); the classification logits are compared."""
  import benchmarks.torch_references as refs
  import benchmarks.torch_references_004 as refs4
  from semdepth_jax.models import get_model

  attrs = {"width_divisor": 8, "sam_k": 4, "depth_bins": ("log10", 0.7, 10.0, 8)} if smoke else {}
  model = get_model("ds_sidenet", **attrs)
  ref = refs4.build_ds_sidenet(
    model.variant, model.width_divisor, model.num_bin_classes(), model.sam_k, model.sam_modules
  )
  refs.randomise_batchnorm(ref, seed + 1)
  table = refs4.ds_sidenet_key_table(model.variant, model.sam_k, model.sam_modules)
  variables = _convert("ds_sidenet", model, ref, table, image)
  attrs = {"variant": model.variant, "upproj_impl": model.upproj_impl, **attrs}
  return Pair("ds_sidenet", model, variables, ref, "depth_logits", refs.nhwc, attrs, _image_input)


PAIR_BUILDERS: dict[str, Callable[[bool, np.ndarray, int], Pair]] = {
  "unet": _pair_unet,
  "scrx": _pair_scrx,
  "cnn3d_up": _pair_cnn3d_up,
  "semantic_md": _pair_semantic_md,
  "deeplab_vgg": _pair_deeplab_vgg,
  "depthnet": _pair_depthnet,
  "hybridnet_a1": _pair_hybridnet_a1,
  "hybridnet_a2": _pair_hybridnet_a2,
  "deeplab_v2": _pair_deeplab_v2,
  "deeplab_sid": _pair_deeplab_sid,
  "deeplab_regression": _pair_deeplab_regression,
  "cnn3d_s": _pair_cnn3d_s,
  "ssegdepnet": _pair_ssegdepnet,
  "ds_sidenet": _pair_ds_sidenet,
}
"""Registry name -> ``(smoke, image NHWC float32 [0, 1], seed) -> Pair``: both implementations of the
family with the same random weights (paper widths, or tiny ones with ``smoke``). A family's entry here and
its input size in :data:`PAPER_SIZE` are all that is needed to add it to the comparison."""


def build_pair(name: str, smoke: bool, image: np.ndarray, seed: int = 0) -> Pair:
  """Builds the two implementations of ``name`` (paper widths, or tiny ones with ``smoke``).

  Raises:
    KeyError: ``name`` has no reference (see :data:`NO_REFERENCE`).
  """
  import torch

  if name not in PAIR_BUILDERS:
    raise KeyError(f"compare: no PyTorch reference for {name!r}")
  torch.manual_seed(seed)
  return PAIR_BUILDERS[name](smoke, image, seed)


def _image_input(image: np.ndarray, labels: np.ndarray) -> Any:
  import torch

  import benchmarks.torch_references as refs

  del labels
  return refs.nchw(image, torch)


def _volume_input(attrs: dict) -> Callable[[np.ndarray, np.ndarray], Any]:
  """The RGB+OHESS volume the 3-D nets build from image and labels, as (B, 1, D, H, W) for PyTorch."""

  def make(image: np.ndarray, labels: np.ndarray) -> Any:
    import jax.numpy as jnp
    import torch

    from semdepth_jax.models import cnn3d, ohess

    planes = ohess.ohess_from_labels(jnp.asarray(labels), attrs["num_classes"])
    vol = ohess.rgb_ohess_volume(jnp.asarray(image), planes, cnn3d.MIN_VOLUME_DEPTH)
    return torch.from_numpy(np.array(np.moveaxis(np.asarray(vol), -1, 1)))  # a writable copy

  return make


def check_equal(pair: Pair, image: np.ndarray, labels: np.ndarray, torch_device: str) -> dict:
  """Inference-mode outputs of both on ``image`` (float32); ``{'max_abs_diff', 'scale', 'ok'}``."""
  import jax
  import jax.numpy as jnp
  import torch

  from semdepth_jax.train.step import accepts_labels

  kw = {"labels": jnp.asarray(labels)} if accepts_labels(pair.model) else {}
  # Full float32 for the check: on GPUs both frameworks may otherwise use TF32 (10-bit mantissa) for
  # convolutions; the timed steps keep each framework's defaults.
  with jax.default_matmul_precision("highest"):
    apply = jax.jit(lambda v, x, kw: pair.model.apply(v, x, train=False, **kw)[pair.output_key])
    ours = np.asarray(apply(pair.variables, jnp.asarray(image), kw))
  m = pair.torch_model.to(torch_device).eval()
  flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
  torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
  try:
    with torch.inference_mode():
      theirs = pair.torch_to_ours(m(pair.torch_input(image, labels).to(torch_device)))
  finally:
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
  if ours.shape != theirs.shape:
    return {"ok": False, "error": f"shapes differ: ours {ours.shape}, PyTorch {theirs.shape}"}
  diff = float(np.abs(ours - theirs).max())
  scale = float(np.abs(theirs).max())
  rec = {"ok": diff <= TOL * max(1.0, scale) and scale > 0, "max_abs_diff": diff, "scale": scale}
  if scale == 0:
    rec["error"] = "the reference's output is all zero: the check would prove nothing"
  return rec


VARIANTS = {
  "eigen": "config.cpu_conv='eigen' (train step: XLA's Eigen convolutions instead of YNNPACK fusions)",
  "dwconv": "depthwise convolutions as one grouped convolution (layers.depthwise_conv_impl('conv'), "
  "the library's behaviour before the CPU default became 'taps')",
  "pointwise": "config.pointwise_conv='dot' (1x1 convolutions as matrix products, "
  "layers.pointwise_conv_impl('dot'); in infer mode too)",
  "volume": "config.volume_conv='planes' (3-D convolutions as sums of 2-D ones over the depth taps, "
  "layers.volume_conv_impl('planes'); in infer mode too)",
}
"""``--variants``: further JAX configurations timed side by side with the default (one column each)."""


def _jax_runner(pair: Pair, image, labels, mode: str, dtype: str, seed: int, variant: str = ""):
  """``(run(), flops, compile_s)`` of the JAX step (a :data:`VARIANTS` key, or '' = the defaults).

  ``run`` advances the train state in train mode.
  """
  import contextlib

  import jax
  import jax.numpy as jnp
  import optax

  from benchmarks import xla_flops
  from semdepth_jax.models import layers
  from semdepth_jax.train import step as step_lib
  from semdepth_jax.train.state import create_state, split_variables

  compute = {"f32": "float32", "bf16": "bfloat16"}[dtype]
  options = step_lib.compiler_options("eigen" if variant == "eigen" else "ynn")  # config.cpu_conv
  traced = contextlib.nullcontext()
  if variant == "dwconv":
    traced = layers.depthwise_conv_impl("conv")
  elif variant == "pointwise":
    traced = layers.pointwise_conv_impl("dot")
  elif variant == "volume":
    traced = layers.volume_conv_impl("planes")
  batch = {"image": jnp.asarray(image), "segmentation": jnp.asarray(labels, jnp.int32)}
  # The weights go to the device once, as PyTorch holds its own: no step copies them from NumPy.
  variables = jax.device_put(pair.variables)
  key = pair.output_key
  if mode == "train":

    def loss_fn(outputs, batch):
      return jnp.mean(jnp.square(outputs[key])), {}

    tx = optax.sgd(1e-3, momentum=0.9)
    params, stats = split_variables(variables)
    state = create_state(params, stats, tx.init(params), jax.random.key(seed))
    raw = step_lib.make_train_step(pair.model, loss_fn, tx, compute_dtype=compute)
    fn = jax.jit(raw, compiler_options=options)
    args = [state, batch]
  else:
    dt = step_lib.COMPUTE_DTYPES[compute]

    def infer(variables, batch):
      out, _ = step_lib.apply_model(pair.model, variables, batch, train=False, compute_dtype=dt)
      return out[key]

    raw = infer
    fn = jax.jit(raw)  # config.cpu_conv applies to the train step only
    args = [variables, batch]
  with traced:  # one block: a variant's context manager can be entered once
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    flops = xla_flops.program_flops(raw, *args)

  def run():
    out = compiled(*args)
    if mode == "train":
      args[0] = out[0]
    jax.block_until_ready(out)

  return run, flops, compile_s


def _torch_runner(
  pair: Pair, image, labels, mode: str, dtype: str, device: str, compile_model: bool
):
  """``run()`` for one PyTorch step (eager, or ``torch.compile`` with ``compile_model``)."""
  import torch

  model = pair.torch_model.to(device)
  x = pair.torch_input(image, labels).to(device)
  if compile_model:
    model = torch.compile(model)
  autocast = torch.autocast(
    device_type="cuda" if device.startswith("cuda") else "cpu",
    dtype=torch.bfloat16,
    enabled=dtype == "bf16",
  )
  sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
  if mode == "train":
    model.train()
    opt = torch.optim.SGD(pair.torch_model.parameters(), lr=1e-3, momentum=0.9)

    def run():
      opt.zero_grad(set_to_none=True)
      with autocast:
        out = model(x)
      loss = out.float().square().mean()
      loss.backward()
      opt.step()
      sync()

  else:
    model.eval()

    def run():
      with torch.inference_mode(), autocast:
        model(x)
      sync()

  return run


def _stats(times: Sequence[float]) -> dict:
  return {
    "median": statistics.median(times),
    "min": min(times),
    "max": max(times),
    "all": [round(t, 6) for t in times],
  }


def compare_model(name: str, args: argparse.Namespace, torch_device: str) -> dict:
  """Checks equality and times one family; returns its JSON record."""
  import jax
  import torch

  h, w = args.size or (SMOKE_SIZE.get(name, (16, 16)) if args.smoke else PAPER_SIZE[name])
  image = np.random.default_rng(args.seed).random((args.batch, h, w, 3)).astype(np.float32)
  rec: dict[str, Any] = {"model": name, "batch": args.batch, "size": [h, w]}
  pair = build_pair(name, args.smoke, image, args.seed)
  rec["attributes"] = {
    k: list(v) if isinstance(v, tuple) else v for k, v in pair.attributes.items()
  }
  rec["params"] = int(sum(np.prod(v.shape) for v in jax.tree.leaves(pair.variables.get("params"))))
  rec["torch_params"] = int(sum(p.numel() for p in pair.torch_model.parameters()))
  labels = np.random.default_rng(args.seed + 1).integers(0, pair.num_classes, image.shape[:3])
  labels = labels.astype(np.int32)
  rec["equality"] = check_equal(pair, image, labels, torch_device)
  if not rec["equality"]["ok"]:
    rec["status"] = "mismatch"
    return rec
  run_jax, rec["flops"], rec["jax_compile_s"] = _jax_runner(
    pair, image, labels, args.mode, args.dtype, args.seed
  )
  runners = {"jax": run_jax}
  for v in args.variants:
    if v == "eigen" and args.mode != "train":
      continue
    runners[f"jax_{v}"], _, rec[f"jax_{v}_compile_s"] = _jax_runner(
      pair, image, labels, args.mode, args.dtype, args.seed, v
    )
  runners["torch"] = _torch_runner(pair, image, labels, args.mode, args.dtype, torch_device, False)
  if args.torch_compile:
    try:
      t0 = time.perf_counter()
      tc = _torch_runner(pair, image, labels, args.mode, args.dtype, torch_device, True)
      tc()
      rec["torch_compile_warmup_s"] = time.perf_counter() - t0
      runners["torch_compile"] = tc
    except Exception as e:  # noqa: BLE001  (reported, the eager comparison still runs)
      rec["torch_compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
  if torch_device.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
  for run in runners.values():
    for _ in range(args.warmup):
      run()
  times: dict[str, list[float]] = {k: [] for k in runners}
  for _ in range(args.repeats):
    for k, run in runners.items():
      t0 = time.perf_counter()
      run()
      times[k].append(time.perf_counter() - t0)
  for k, ts in times.items():
    rec[f"{k}_s"] = _stats(ts)
  rec["ratio"] = rec["torch_s"]["median"] / rec["jax_s"]["median"]
  for v in args.variants:
    if f"jax_{v}_s" in rec:
      rec[f"ratio_{v}"] = rec["torch_s"]["median"] / rec[f"jax_{v}_s"]["median"]
  if "torch_compile_s" in rec:
    rec["ratio_compiled"] = rec["torch_compile_s"]["median"] / rec["jax_s"]["median"]
  rec["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  mem = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in mem:
    rec["jax_peak_mib"] = mem["peak_bytes_in_use"] / 2**20
  if torch_device.startswith("cuda"):
    rec["torch_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
  if rec["flops"]:
    rec["jax_tflops_per_s"] = rec["flops"] / rec["jax_s"]["median"] / 1e12
  rec["status"] = "ok"
  return rec


def environment(torch_device: str, threads: str) -> dict:
  """Versions, devices and date of the run."""
  import jax
  import jaxlib
  import torch

  dev = jax.devices()[0]
  return {
    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "torch": torch.__version__,
    "python": platform.python_version(),
    "jax_backend": jax.default_backend(),
    "jax_device": getattr(dev, "device_kind", str(dev)),
    "torch_device": torch.cuda.get_device_name() if torch_device.startswith("cuda") else "cpu",
    "cpu_count": os.cpu_count(),
    "threads": threads,
    "machine": platform.machine(),
  }


def _fmt_time(s: dict | None) -> str:
  if not s:
    return "–"
  return f"{s['median']:.4g} ({s['min']:.3g}–{s['max']:.3g})"


def markdown(results: dict) -> str:
  """The results as a markdown table (seconds per step; ratio = PyTorch / JAX)."""
  env, a = results["environment"], results["args"]
  variants = list(a.get("variants", ()))
  vhead = "".join(f"JAX {v} s/step | ratio ({v}) | " for v in variants)
  lines = [
    f"{a['mode']}, batch {a['batch']}, {a['dtype']}; jax {env['jax']} ({env['jax_device']}), "
    f"torch {env['torch']} ({env['torch_device']}); {env['threads']}; {env['date']}",
    "",
    "| model | status | params | JAX s/step (min–max) | PyTorch s/step (min–max) | ratio | "
    + vhead
    + "torch.compile s/step | JAX compile s | GFLOP/step | max RSS MiB | max abs diff |",
    "|---" * (11 + 2 * len(variants)) + "|",
  ]
  for r in results["models"]:
    if r["status"] == "no reference":
      lines.append(
        f"| {r['model']} | no reference: {r['reason']} |" + " – |" * (9 + 2 * len(variants))
      )
      continue
    eq = r.get("equality", {})
    tc = (
      _fmt_time(r.get("torch_compile_s"))
      if "torch_compile_s" in r
      else r.get("torch_compile_error", "–")
    )
    flops = f"{r['flops'] / 1e9:.3g}" if r.get("flops") else "–"
    vcells = "".join(
      f"{_fmt_time(r.get(f'jax_{v}_s'))} | "
      + (f"{r[f'ratio_{v}']:.2f}" if f"ratio_{v}" in r else "–")
      + " | "
      for v in variants
    )
    lines.append(
      f"| {r['model']} | {r['status']} | {r.get('params', 0):,} | {_fmt_time(r.get('jax_s'))} | "
      f"{_fmt_time(r.get('torch_s'))} | {r['ratio']:.2f} | {vcells}{tc} | "
      f"{r.get('jax_compile_s', 0):.1f} | {flops} | {r.get('max_rss_mib', 0):.0f} | "
      f"{eq.get('max_abs_diff', float('nan')):.1e} |"
      if r["status"] == "ok"
      else f"| {r['model']} | {r['status']} | {r.get('params', 0):,} |"
      + " – |" * (7 + 2 * len(variants))
      + f" {eq.get('max_abs_diff', eq.get('error', '–'))} |"
    )
  return "\n".join(lines) + "\n"


def _pin_threads(n: int | None) -> str:
  if not n:
    return f"threads: default ({os.cpu_count()} CPUs)"
  try:
    cpus = sorted(os.sched_getaffinity(0))[:n]
    os.sched_setaffinity(0, cpus)
    return f"{n} threads (cores {cpus})"
  except (AttributeError, OSError) as e:
    return f"{n} threads, no affinity ({e})"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """The command line (see the module docstring)."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--models", default="all", help="'all' or comma-separated registry names")
  p.add_argument("--mode", choices=("train", "infer"), default="train")
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--size", default="", help="H,W (default: the paper size; 16,16 with --smoke)")
  p.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--smoke", action="store_true", help="tiny widths and images, 1 timed step")
  p.add_argument(
    "--torch-compile", action="store_true", help="also time torch.compile (slow on CPU)"
  )
  p.add_argument("--threads", type=int, default=0, help="pin to N cores (0: leave as is)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--variants",
    default="",
    help="comma-separated further JAX configurations timed side by side: "
    + "; ".join(f"{k}: {v}" for k, v in VARIANTS.items()),
  )
  p.add_argument("--out", default="", help="directory for compare_<mode>_<dtype>.json and .md")
  args = p.parse_args(argv)
  if args.size:
    try:
      h, w = (int(v) for v in args.size.split(","))
    except ValueError:
      p.error(f"--size: expected H,W (e.g. 192,320), got {args.size!r}")
    args.size = (h, w)
  else:
    args.size = None
  args.variants = tuple(v for v in args.variants.split(",") if v)
  unknown = [v for v in args.variants if v not in VARIANTS]
  if unknown:
    p.error(f"--variants: expected names from {', '.join(VARIANTS)}, got {','.join(unknown)!r}")
  if args.smoke:
    args.repeats, args.warmup = 1, 1
  return args


def main(argv: Sequence[str] | None = None) -> dict:
  """Runs the comparison; prints the markdown table and returns the results dict (also written to --out).

  Raises:
    SystemExit: an unknown model name (the message lists the known ones).
  """
  args = parse_args(argv)
  threads = _pin_threads(args.threads)
  import torch

  from semdepth_jax.models import known_models

  if args.threads:
    torch.set_num_threads(args.threads)
  names = list(known_models()) if args.models == "all" else args.models.split(",")
  unknown = [n for n in names if n not in known_models()]
  if unknown:
    raise SystemExit(f"compare.py --models: unknown {unknown}; known: {', '.join(known_models())}")
  import jax

  torch_device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  results = {
    "args": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()},
    "environment": environment(torch_device, threads),
    "tolerance": TOL,
    "models": [],
  }
  for name in names:
    if name not in PAIR_BUILDERS:
      results["models"].append(
        {"model": name, "status": "no reference", "reason": NO_REFERENCE.get(name, "none written")}
      )
      continue
    rec = compare_model(name, args, torch_device)
    results["models"].append(rec)
    print(
      json.dumps({k: rec[k] for k in ("model", "status", "ratio") if k in rec}), file=sys.stderr
    )
    _save(results, args)  # after every model, so a run stopped by a time limit keeps its rows
  print(_save(results, args))
  return results


def _save(results: dict, args: argparse.Namespace) -> str:
  table = markdown(results)
  if args.out:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"compare_{args.mode}_{args.dtype}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    (out / f"{stem}.md").write_text(table)
  return table


if __name__ == "__main__":
  main()
