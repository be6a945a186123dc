"""Paper 001 blocks vs references written with PyTorch's own layers (docs/model_spec.md §2.1, §2.2).

PyTorch has the Caffe operators the paper's networks are made of: ``nn.LocalResponseNorm`` (Caffe's LRN
for odd sizes), ``F.interpolate(mode='bilinear', align_corners=True)`` (Caffe ``Interp``),
``nn.MaxPool2d(3, 2, 1, ceil_mode=True)`` (Caffe pooling) and dilated ``nn.Conv2d``. Each block is rebuilt
here from those (NCHW), given the JAX module's weights, and must agree to 1e-4 at small widths on odd sizes.
The global net's FC reads the trunk output in NHWC order (``permute(0, 2, 3, 1)`` before flattening here);
Caffe weights flattened in NCHW order would need that permutation when converted.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax import resize
from semdepth_jax.models import hybridnet, layers

TOL = 1e-4


def _t(torch, x):
  """NHWC numpy -> NCHW torch."""
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _conv(torch, p, stride=1, padding=0, dilation=1):
  """A torch Conv2d with the weights of a layers.Conv param dict (kernel HWIO -> OIHW)."""
  k = np.asarray(p["kernel"])
  m = torch.nn.Conv2d(
    k.shape[2], k.shape[3], k.shape[:2], stride=stride, padding=padding, dilation=dilation
  )
  with torch.no_grad():
    m.weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1).copy()))
    m.bias.copy_(torch.from_numpy(np.asarray(p["bias"]).copy()))
  return m


def _randomise(params, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: (0.3 * rng.standard_normal(a.shape)).astype(np.float32), params)


def _close(got_nhwc, ref_nchw):
  ref = ref_nchw.detach().numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(got_nhwc), ref, rtol=TOL, atol=TOL)


def test_lrn_and_interp_match_torch(torch):
  F = torch.nn.functional
  x = (20.0 * np.random.default_rng(0).standard_normal((2, 7, 9, 11))).astype(np.float32)
  for size, alpha, beta, k in ((5, 1e-4, 0.75, 1.0), (3, 0.3, 0.5, 2.0)):
    got = layers.LocalResponseNorm(size, alpha, beta, k).apply({}, jnp.asarray(x))
    _close(got, torch.nn.LocalResponseNorm(size, alpha, beta, k)(_t(torch, x)))
  for size in ((13, 17), (4, 5), (7, 9), (1, 3)):
    got = resize.bilinear_align_corners(jnp.asarray(x), size)
    _close(got, F.interpolate(_t(torch, x), size=size, mode="bilinear", align_corners=True))


def test_aspp_matches_torch(torch):
  x = np.random.default_rng(1).standard_normal((2, 9, 11, 6)).astype(np.float32)
  m = hybridnet.ASPPVGG(num_classes=3, width=5, rates=(1, 2, 6, 12))
  params = _randomise(m.init(jax.random.key(0, impl="unsafe_rbg"), jnp.asarray(x))["params"], 2)
  got = m.apply({"params": params}, jnp.asarray(x))
  xt, ref = _t(torch, x), 0
  for i, r in enumerate((1, 2, 6, 12), start=1):
    y = torch.relu(_conv(torch, params[f"fc6_{i}"], padding=r, dilation=r)(xt))
    y = torch.relu(_conv(torch, params[f"fc7_{i}"])(y))
    ref = ref + _conv(torch, params[f"fc8_{i}"])(y)
  _close(got, ref)


def _torch_trunk(torch, params, x, kernels):
  pool = torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)
  lrn = torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)
  for i, k in enumerate(kernels):
    x = _conv(torch, params[f"conv{i + 1}"], stride=2 if i == 0 else 1, padding=k // 2)(x)
    x = lrn(torch.relu(x))
    if i in (0, 4):
      x = pool(x)
  return x


@pytest.mark.parametrize("size", [(33, 41), (35, 30)])
def test_global_and_gradient_nets_match_torch(torch, size):
  x = np.random.default_rng(3).uniform(-2, 2, (2, *size, 3)).astype(np.float32)
  kernels = (11, 5, 3, 3, 3)
  g = hybridnet.GlobalDepthNet(widths=(4, 5, 6, 6, 4), fc_hidden=7)
  gp = _randomise(g.init(jax.random.key(0, impl="unsafe_rbg"), jnp.asarray(x))["params"], 4)
  got = g.apply({"params": gp}, jnp.asarray(x))
  with torch.no_grad():
    t = _torch_trunk(torch, gp, _t(torch, x), kernels)
    h, w = t.shape[2:]
    flat = t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)
    y = torch.relu(flat @ torch.from_numpy(np.asarray(gp["fc6"]["kernel"])) + torch.from_numpy(
      np.asarray(gp["fc6"]["bias"])
    ))  # fmt: skip
    y = y @ torch.from_numpy(np.asarray(gp["fc7"]["kernel"])) + torch.from_numpy(
      np.asarray(gp["fc7"]["bias"])
    )
  np.testing.assert_allclose(np.asarray(got), y.numpy().reshape(2, h, w, 1), rtol=TOL, atol=TOL)
  d = hybridnet.GradientNet(widths=(4, 5, 6, 6, 4))
  dp = _randomise(d.init(jax.random.key(0, impl="unsafe_rbg"), jnp.asarray(x))["params"], 5)
  with torch.no_grad():
    ref = _conv(torch, dp["out"], padding=1)(_torch_trunk(torch, dp, _t(torch, x), kernels))
  _close(d.apply({"params": dp}, jnp.asarray(x)), ref)


def test_refine_net_matches_torch(torch):
  F = torch.nn.functional
  rng = np.random.default_rng(6)
  x = rng.uniform(-2, 2, (2, 33, 49, 3)).astype(np.float32)
  coarse = [rng.standard_normal((2, 5, 7, c)).astype(np.float32) for c in (1, 4)]
  m = hybridnet.RefineNet(conv1_width=3, widths=(4, 4, 4))
  params = _randomise(
    m.init(jax.random.key(0, impl="unsafe_rbg"), jnp.asarray(x), [jnp.asarray(c) for c in coarse])[
      "params"
    ],
    7,
  )
  got = m.apply({"params": params}, jnp.asarray(x), [jnp.asarray(c) for c in coarse])
  assert got.shape == (2, 9, 13, 1)  # 33 -> 17 -> 9 = 2 * 5 - 1; 49 -> 25 -> 13 = 2 * 7 - 1
  with torch.no_grad():
    f = _conv(torch, params["conv1"], stride=2, padding=4)(_t(torch, x))
    f = torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)(
      torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)(torch.relu(f))
    )
    ups = [
      F.interpolate(_t(torch, c), size=f.shape[2:], mode="bilinear", align_corners=True)
      for c in coarse
    ]
    y = torch.cat([f, *ups], dim=1)
    for i in (2, 3, 4):
      y = torch.relu(_conv(torch, params[f"conv{i}"], padding=2)(y))
    ref = _conv(torch, params["conv5"], padding=2)(y)
  _close(got, ref)
