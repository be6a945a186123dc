"""VGG16 / ResNet parity with the real torchvision models, through `semdepth convert-weights`.

Each reference model gets random weights (He-scaled convolutions, non-zero biases, BatchNorm running
statistics calibrated on an input and then perturbed, random affine parameters, the last BN of each residual
branch damped so 101 layers keep values O(1)); its state dict is saved with ``torch.save`` and converted
with the CLI entry point. Features at every stride (forward hooks on the torchvision modules) and the
logits must agree to 1e-4 (float32, absolute) at 224x224 and at the odd 321x321.

The Places365 ResNet-18 reference is torchvision's resnet18 changed the way CSAILVision ``wideresnet.py``
differs (no max pool, ``nn.AvgPool2d(14)``, 365 classes); the DeepLab-v2 style ResNet-50 reference is
torchvision's resnet50 with ``replace_stride_with_dilation=[False, True, True]`` changed as
docs/model_spec.md §3.1 says (stride on the first 1x1, ceil-mode stem pool, every block of layer3 / layer4
dilated 2 / 4).
"""

import math

import jax
import numpy as np
import pytest

from semdepth_jax import main as cli
from semdepth_jax.weights import convert
from tests.parity.conftest import require

TOL = 1e-4
SIZES = (224, 321)


def _randomise(torch, model, seed=0, calib_size=96):
  """Random He-scaled weights, random biases / BN affine; BN statistics calibrated, then perturbed."""
  nn = torch.nn
  g = torch.Generator().manual_seed(seed)

  def randn(shape):
    return torch.randn(shape, generator=g)

  def uniform(shape, lo, hi):
    return lo + (hi - lo) * torch.rand(shape, generator=g)

  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.Conv2d | nn.Linear):
        fan_in = m.weight[0].numel()
        m.weight.copy_(randn(m.weight.shape) * math.sqrt(2.0 / fan_in))
        if m.bias is not None:
          m.bias.copy_(0.1 * randn(m.bias.shape))
      elif isinstance(m, nn.BatchNorm2d):
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration pass
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if bns:
      model.train()
      model(randn((2, 3, calib_size, calib_size)))
      for m in bns:
        m.running_mean.add_(0.2 * randn(m.running_mean.shape) * m.running_var.sqrt())
        m.running_var.mul_(uniform(m.running_var.shape, 0.5, 1.5))
        m.weight.copy_(uniform(m.weight.shape, 0.5, 1.5))
        m.bias.copy_(0.2 * randn(m.bias.shape))
      # Damp each residual branch's last BN so the identity path does not grow with depth.
      last = ".bn3" if any(n.endswith(".bn3") for n, _ in model.named_modules()) else ".bn2"
      for name, m in model.named_modules():
        if name.endswith(last):
          m.weight.mul_(0.3)
  model.eval()
  return model


def _hooked_forward(torch, model, modules, x_nhwc):
  """Runs ``model`` on an NHWC numpy batch; returns {name: NHWC numpy output of that module}, logits."""
  out, handles = {}, []
  for name, mod in modules.items():

    def hook(_m, _inp, y, name=name):
      out[name] = y.detach().clone().permute(0, 2, 3, 1).numpy()

    handles.append(mod.register_forward_hook(hook))
  with torch.no_grad():
    logits = model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))))
  for h in handles:
    h.remove()
  return out, logits.numpy()


def _convert(torch, model, arch, tmp_path, *sets):
  src = tmp_path / f"{arch}.pth"
  torch.save(model.state_dict(), src)
  out = tmp_path / f"{arch}_converted"
  argv = ["convert-weights", "--arch", arch, "--src", str(src), "--out", str(out)]
  for s in sets:
    argv += ["--set", s]
  assert cli.main(argv) == 0
  variables, meta = convert.load_converted(out)
  assert meta["architecture"] == arch
  return convert.build_from_metadata(meta), variables


def _count(tree):
  return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(tree))


def _compare(torch, model, ours, variables, modules, sizes=SIZES, logits=True):
  rng = np.random.default_rng(1)
  apply = jax.jit(lambda v, x: ours.apply(v, x, train=False))
  for size in sizes:
    x = rng.standard_normal((1, size, size, 3)).astype(np.float32)
    ref, ref_logits = _hooked_forward(torch, model, modules, x)
    got = apply(variables, x)
    for name, want in ref.items():
      have = np.asarray(got["features"][name])
      assert have.shape == want.shape, (size, name, have.shape, want.shape)
      err = float(np.max(np.abs(have - want)))
      scale = float(np.max(np.abs(want)))
      print(f"{size}x{size} {name}: max |diff| {err:.2e}, max |ref| {scale:.2f}")
      assert 0.05 < scale < 100, (size, name, scale)  # values O(1): the tolerance is meaningful
      assert err <= TOL, f"{size}x{size} {name}: max |diff| {err:.2e} (max |ref| {scale:.2f})"
    if logits:
      have = np.asarray(got["logits"])
      err = float(np.max(np.abs(have - ref_logits)))
      print(
        f"{size}x{size} logits: max |diff| {err:.2e}, max |ref| {np.max(np.abs(ref_logits)):.2f}"
      )
      assert have.shape == ref_logits.shape
      assert err <= TOL, f"{size}x{size} logits: max |diff| {err:.2e}"
    else:
      assert "logits" not in got


def _resnet_modules(model):
  return {
    "stride2": model.relu,
    "stride4": model.layer1,
    "stride8": model.layer2,
    "stride16": model.layer3,
    "stride32": model.layer4,
  }


def test_vgg16(torch, tmp_path):
  tv = require("torchvision")
  model = _randomise(torch, tv.models.vgg16(weights=None))
  ours, variables = _convert(torch, model, "vgg16", tmp_path)
  n_torch = sum(p.numel() for p in model.parameters())
  assert _count(variables["params"]) == n_torch == 138_357_544
  f = model.features
  modules = {
    "stride1": f[3],
    "stride2": f[8],
    "stride4": f[15],
    "stride8": f[22],
    "stride16": f[29],
    "stride32": f[30],
  }
  _compare(torch, model, ours, variables, modules)


def test_vgg16_deeplab(torch, tmp_path):
  """model_spec §2.1: 3x3 ceil-mode pools with pad 1 (stride 2, 2, 2, 1, 1), conv5 dilation 2."""
  tv = require("torchvision")
  model = tv.models.vgg16(weights=None)
  f = model.features
  for i, stride in ((4, 2), (9, 2), (16, 2), (23, 1), (30, 1)):
    f[i] = torch.nn.MaxPool2d(3, stride, 1, ceil_mode=True)
  for i in (24, 26, 28):
    f[i].dilation = f[i].padding = (2, 2)
  model = _randomise(torch, model)
  # The full ImageNet state dict: the classifier keys are dropped by the key table.
  ours, variables = _convert(torch, model, "vgg16_deeplab", tmp_path)
  assert _count(variables["params"]) == sum(p.numel() for p in f.parameters())
  modules = {
    "stride1": f[3],
    "stride2": f[8],
    "stride4": f[15],
    "stride8": f[22],
    "stride16": f[29],
    "stride32": f[30],
  }
  _compare(torch, f, ours, variables, modules, logits=False)


@pytest.mark.parametrize("depth,count", [(18, 11_689_512), (101, 44_549_160)])
def test_resnet(torch, tmp_path, depth, count):
  tv = require("torchvision")
  model = _randomise(torch, getattr(tv.models, f"resnet{depth}")(weights=None))
  ours, variables = _convert(torch, model, f"resnet{depth}", tmp_path)
  n_torch = sum(p.numel() for p in model.parameters())
  assert _count(variables["params"]) == n_torch == count
  _compare(torch, model, ours, variables, _resnet_modules(model))


def test_resnet18_places365(torch, tmp_path):
  """CSAILVision wideresnet.py: torchvision resnet18 without the stem max pool, AvgPool2d(14), 365 classes."""
  tv = require("torchvision")
  model = tv.models.resnet18(weights=None, num_classes=365)
  model.maxpool = torch.nn.Identity()
  model.avgpool = torch.nn.AvgPool2d(14)
  model = _randomise(torch, model, calib_size=224)
  # The released file is a training checkpoint: {'state_dict': {'module.' + key: ...}, ...}.
  src = tmp_path / "wideresnet18_places365.pth.tar"
  wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
  torch.save({"epoch": 90, "arch": "resnet18", "state_dict": wrapped, "best_prec1": 54.7}, src)
  out = tmp_path / "places"
  argv = ["convert-weights", "--arch", "resnet18_places365", "--src", str(src), "--out", str(out)]
  assert cli.main(argv) == 0
  variables, meta = convert.load_converted(out)
  ours = convert.build_from_metadata(meta)
  assert _count(variables["params"]) == sum(p.numel() for p in model.parameters())
  _compare(torch, model, ours, variables, _resnet_modules(model))


def test_resnet50_caffe_os8_frozen_bn(torch, tmp_path):
  """model_spec §3.1: stride on the first 1x1, ceil-mode stem pool, layer3 / layer4 all dilated 2 / 4."""
  tv = require("torchvision")
  model = tv.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
  model.maxpool.ceil_mode = True
  for layer in (model.layer2, model.layer3, model.layer4):
    first = layer[0]
    stride = first.conv2.stride
    first.conv1.stride, first.conv2.stride = stride, (1, 1)
  # torchvision gives a dilated layer's first block the previous dilation; DeepLab-v2 does not.
  for layer, dilation in ((model.layer3, 2), (model.layer4, 4)):
    for block in layer:
      block.conv2.dilation = block.conv2.padding = (dilation, dilation)
  model = _randomise(torch, model)
  sets = (
    "stride_in_1x1=True",
    "ceil_mode=True",
    "output_stride=8",
    "dilation_mode=deeplab_v2",
    "bn=frozen",
  )
  ours, variables = _convert(torch, model, "resnet50", tmp_path, *sets)
  n_bn_affine = sum(
    m.weight.numel() + m.bias.numel()
    for m in model.modules()
    if isinstance(m, torch.nn.BatchNorm2d)
  )
  frozen = convert.keymap.flatten(variables["batch_stats"])
  assert sum(v.size for k, v in frozen.items() if k.endswith(("/scale", "/bias"))) == n_bn_affine
  assert _count(variables["params"]) + n_bn_affine == sum(p.numel() for p in model.parameters())
  # Odd sizes around the ceil-mode boundary of the stem pool (161 -> 81 ceil vs 80 floor).
  _compare(torch, model, ours, variables, _resnet_modules(model), sizes=(224, 321))


def test_pooling_helpers_match_torch(torch):
  """layers.torch_max_pool / adaptive_avg_pool against torch.nn.functional on many sizes."""
  from semdepth_jax.models import layers

  F = torch.nn.functional
  rng = np.random.default_rng(3)
  for n in (3, 4, 5, 8, 17, 18):
    x = rng.standard_normal((1, n, n + 3, 2)).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    for k, s, p in ((2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 2, 1), (3, 3, 1), (3, 2, 0)):
      for ceil in (False, True):
        want = F.max_pool2d(xt, k, s, p, ceil_mode=ceil).permute(0, 2, 3, 1).numpy()
        got = np.asarray(layers.torch_max_pool(x, k, s, p, ceil_mode=ceil))
        assert got.shape == want.shape, (n, k, s, p, ceil)
        np.testing.assert_array_equal(got, want)
    for out in ((7, 7), (1, 1), (3, 5)):
      want = F.adaptive_avg_pool2d(xt, out).permute(0, 2, 3, 1).numpy()
      got = np.asarray(layers.adaptive_avg_pool(x, out))
      np.testing.assert_allclose(got, want, atol=1e-6, err_msg=str((n, out)))
