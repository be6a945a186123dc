"""Papers 001 / 002 in ``benchmarks/compare.py``: the whole-model PyTorch references agree with ours.

The references (``benchmarks/torch_references_001_002.py``) are built from torchvision / PyTorch layers
and docs/model_spec.md §2, §3.1; our variables come from their state dicts through the key tables. Here
at tiny widths on 16 x 16 inputs (``compare.py --smoke``): inference-mode outputs agree to
``compare.TOL``, the parameter counts are equal, and plausible reference mistakes are caught (the check is
not vacuous). No timing is asserted. ``compare.py --models <these> --smoke`` runs the train-mode steps.

Needs the ``parity`` extra (torch, torchvision); skips without it, fails under ``CI=true``.
"""

import jax
import numpy as np
import pytest

from tests.parity.conftest import require

FAMILIES = (
  "deeplab_vgg",
  "depthnet",
  "hybridnet_a1",
  "hybridnet_a2",
  "deeplab_v2",
  "deeplab_sid",
  "deeplab_regression",
)


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  image = rng.random((2, 16, 16, 3)).astype(np.float32)
  return image, np.zeros((2, 16, 16), np.int32)


@pytest.mark.parametrize("name", FAMILIES)
def test_reference_agrees_at_tiny_widths(name):
  require("torchvision")
  from benchmarks import compare

  image, labels = _inputs()
  pair = compare.build_pair(name, True, image)
  rec = compare.check_equal(pair, image, labels, "cpu")
  assert rec["ok"] and rec["max_abs_diff"] <= compare.TOL, rec
  assert 0.1 < rec["scale"] < 100.0, rec  # calibrated: O(1) outputs, so the tolerance is meaningful
  n_ours = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(pair.variables["params"]))
  assert n_ours == sum(p.numel() for p in pair.torch_model.parameters())


def test_hybridnet_a2_every_output_agrees():
  """``forward`` skips the segmentation head; ``forward_all`` gives every output, all equal to ours."""
  torch = require("torch")
  require("torchvision")
  import jax.numpy as jnp

  from benchmarks import compare, torch_references

  image, _ = _inputs(1)
  pair = compare.build_pair("hybridnet_a2", True, image)
  with jax.default_matmul_precision("highest"):
    ours = pair.model.apply(pair.variables, jnp.asarray(image), train=False)
  m = pair.torch_model.eval()
  with torch.no_grad():
    theirs = m.forward_all(torch_references.nchw(image, torch))
  assert sorted(theirs) == ["depth", "global_depth", "seg_logits"]
  for key, got in (("seg_logits", ours["seg_logits"]), ("depth", ours["depth"])):
    want = torch_references.nhwc(theirs[key])
    assert want.shape == (2, 16, 16, got.shape[-1])  # Interp to the input size in inference mode
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, err_msg=key)
  want = torch_references.nhwc(theirs["global_depth"])
  np.testing.assert_allclose(np.asarray(ours["aux"]["global_depth"]), want, atol=1e-4)


def _break_first_dilation(pair):
  """torchvision's rule (the first block of a dilated stage keeps the previous dilation)."""
  conv = pair.torch_model.backbone.layer3[0].conv2
  conv.dilation = conv.padding = (1, 1)


def _break_ceil_pools(pair):
  """PyTorch's default floor-mode pooling instead of Caffe's ceil mode (§2.1)."""
  torch = require("torch")
  for m in pair.torch_model.backbone.features:
    if isinstance(m, torch.nn.MaxPool2d):
      m.ceil_mode = False


def _break_interp(pair):
  """Half-pixel (align_corners=False) resizing of the coarse maps instead of Caffe ``Interp``."""
  torch = require("torch")
  refine = pair.torch_model.refine_net
  forward = refine.forward
  F = torch.nn.functional

  def patched(x, coarse):
    orig = F.interpolate

    def half_pixel(*a, **kw):
      return orig(*a, **{**kw, "align_corners": False})

    F.interpolate = half_pixel
    try:
      return forward(x, coarse)
    finally:
      F.interpolate = orig

  refine.forward = patched


@pytest.mark.parametrize(
  "name,breaker",
  [
    ("deeplab_sid", _break_first_dilation),
    ("deeplab_vgg", _break_ceil_pools),
    ("depthnet", _break_interp),
  ],
)
def test_equality_check_catches_a_wrong_reference(name, breaker):
  require("torchvision")
  from benchmarks import compare

  image, labels = _inputs(2)
  pair = compare.build_pair(name, True, image)
  assert compare.check_equal(pair, image, labels, "cpu")["ok"]
  breaker(pair)
  bad = compare.check_equal(pair, image, labels, "cpu")
  assert not bad["ok"], bad
  assert "error" in bad or bad["max_abs_diff"] > 1e-3, bad
