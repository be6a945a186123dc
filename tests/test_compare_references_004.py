"""The PyTorch references of ``benchmarks/torch_references_004.py`` agree with our models beyond the smoke run.

``tests/test_compare_smoke.py`` checks ds_sidenet, cnn3d_s and ssegdepnet at 16x16 through
``compare.py --smoke``; here: both DS-SIDENet branches, its high range (SAM, stride-1 blocks), sizes that
are not multiples of the total stride (ceil-rounded strides, cropped upsamplings), both ``upproj``
implementations, and that the checks are not vacuous. Tiny widths only.

Needs the ``parity`` extra (torch); skips without it, fails under ``CI=true`` (tests/parity/conftest.py).
"""

import numpy as np
import pytest

from tests.parity.conftest import require

_TINY_DS = {"width_divisor": 8, "sam_k": 4, "depth_bins": ("log10", 0.7, 10.0, 4)}


def _ds_pair(variant: str, upproj_impl: str, image: np.ndarray):
  torch = require("torch")
  from benchmarks import compare
  from benchmarks import torch_references as refs
  from benchmarks import torch_references_004 as refs4
  from semdepth_jax.models import get_model

  torch.manual_seed(0)
  model = get_model("ds_sidenet", variant=variant, upproj_impl=upproj_impl, **_TINY_DS)
  ref = refs4.build_ds_sidenet(variant, 8, 5, sam_k=4)
  refs.randomise_batchnorm(ref, 1)
  table = refs4.ds_sidenet_key_table(variant, sam_k=4)
  return model, ref, compare._convert("ds_sidenet", model, ref, table, image)


def _both_outputs(model, variables, ref, image):
  import jax
  import jax.numpy as jnp
  import torch

  from benchmarks import torch_references as refs

  with jax.default_matmul_precision("highest"):
    out = model.apply(variables, jnp.asarray(image), train=False)
  with torch.inference_mode():
    cls = refs.nhwc(ref.eval()(refs.nchw(image, torch)))
  reg = refs.nhwc(ref.last_regression)
  return (np.asarray(out["depth_logits"]), cls), (np.asarray(out["depth"]), reg)


@pytest.mark.parametrize(
  "variant, upproj_impl, size",
  [("low", "fast", (24, 40)), ("low", "literal", (24, 40)), ("high", "fast", (20, 36))],
)
def test_ds_sidenet_reference_agrees_on_both_branches(variant, upproj_impl, size):
  image = np.random.default_rng(0).random((2, *size, 3)).astype(np.float32)
  model, ref, variables = _ds_pair(variant, upproj_impl, image)
  for ours, theirs in _both_outputs(model, variables, ref, image):
    assert ours.shape == theirs.shape == (2, *size, ours.shape[-1])
    scale = np.abs(theirs).max()
    assert scale > 0.01
    np.testing.assert_allclose(ours, theirs, atol=1e-4 * max(1.0, scale), rtol=0)


def test_ds_sidenet_check_catches_an_unpooling_to_the_wrong_corner():
  """A 5x5 upproj kernel turned by 180 degrees (= unpooling to the bottom-right corner) fails the check."""
  require("torch")
  from benchmarks import compare

  image = np.random.default_rng(0).random((1, 16, 16, 3)).astype(np.float32)
  labels = np.zeros((1, 16, 16), np.int32)
  pair = compare.build_pair("ds_sidenet", True, image)
  assert compare.check_equal(pair, image, labels, "cpu")["ok"]
  params = dict(pair.variables["params"])
  block = dict(params["cls"]["block5"])
  block["conv_b"] = {"kernel": block["conv_b"]["kernel"][::-1, ::-1]}
  params["cls"] = {**params["cls"], "block5": block}
  pair.variables = {**pair.variables, "params": params}
  bad = compare.check_equal(pair, image, labels, "cpu")
  assert not bad["ok"] and bad["max_abs_diff"] > 1e-3, bad


def test_ssegdepnet_depth_depends_on_the_unet_planes():
  """The reference's OHESS step matters: threshold planes instead of arg-max ones change the depth."""
  torch = require("torch")
  from benchmarks import compare
  from benchmarks import torch_references_004 as refs4

  image = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
  labels = np.zeros((2, 16, 16), np.int32)
  pair = compare.build_pair("ssegdepnet", True, image)
  good = compare.check_equal(pair, image, labels, "cpu")
  assert good["ok"], good
  kw = {"base_width": 4, "depth": 1, "dropout_rate": 0.05, "widths": (4, 4, 4)}
  other = refs4.build_ssegdepnet(
    3, **kw, bottleneck_width=4, up_widths=(4, 4), ohess_mode="threshold"
  )
  other.load_state_dict(pair.torch_model.state_dict())
  pair.torch_model = other
  torch.manual_seed(0)
  bad = compare.check_equal(pair, image, labels, "cpu")
  assert not bad["ok"] and bad["max_abs_diff"] > 1e-3, bad


def test_cnn3d_s_reference_agrees_at_another_size_with_random_labels():
  require("torch")
  from benchmarks import compare

  image = np.random.default_rng(0).random((2, 24, 40, 3)).astype(np.float32)
  labels = np.random.default_rng(1).integers(0, 3, (2, 24, 40)).astype(np.int32)
  pair = compare.build_pair("cnn3d_s", True, image)
  rec = compare.check_equal(pair, image, labels, "cpu")
  assert rec["ok"] and rec["max_abs_diff"] <= 1e-6, rec


@pytest.mark.parametrize("name", ["cnn3d_s", "cnn3d_up", "ssegdepnet", "ds_sidenet"])
def test_smoke_reference_output_depends_on_its_input(name):
  """At the smoke size the compared output moves with the input by far more than the tolerance.

  So the agreement ``compare.py --smoke`` reports is not that of two constant maps (with PyTorch's default
  init and random BN statistics a 4-channel 3D CNN-UP's output at 16x16 does not depend on its input).
  """
  torch = require("torch")
  from benchmarks import compare

  rng = np.random.default_rng(0)
  images = rng.random((2, 2, 16, 16, 3)).astype(np.float32)
  labels = rng.integers(0, 3, (2, 2, 16, 16)).astype(np.int32)
  pair = compare.build_pair(name, True, images[0])
  model = pair.torch_model.eval()
  with torch.inference_mode():
    a, b = (
      pair.torch_to_ours(model(pair.torch_input(x, y))) for x, y in zip(images, labels, strict=True)
    )
  assert np.abs(a - b).max() > 100 * compare.TOL * max(1.0, np.abs(a).max())


@pytest.mark.slow
def test_compare_smoke_ds_sidenet(tmp_path):
  """``compare.py --models ds_sidenet --smoke`` (split from tests/test_compare_smoke.py for its ~30 s compile)."""
  require("torch")
  from benchmarks import compare

  results = compare.main(
    ["--models", "ds_sidenet", "--mode", "train", "--smoke", "--batch", "2", "--out", str(tmp_path)]
  )
  (r,) = results["models"]
  assert r["model"] == "ds_sidenet" and r["status"] == "ok", r
  assert r["equality"]["ok"] and r["equality"]["max_abs_diff"] <= compare.TOL, r["equality"]
  assert r["params"] == r["torch_params"] > 0
  assert r["flops"] and r["flops"] > 0
  assert r["jax_s"]["median"] > 0 and r["torch_s"]["median"] > 0
  assert "| ds_sidenet | ok |" in (tmp_path / "compare_train_f32.md").read_text()


def test_ssegdepnet_reference_agrees_with_threshold_planes():
  """The model's default OHESS (sigmoid > 0.5 per class, multi-hot) agrees too, at a non-square size."""
  require("torch")
  from benchmarks import compare

  image = np.random.default_rng(0).random((2, 32, 48, 3)).astype(np.float32)
  labels = np.zeros((2, 32, 48), np.int32)
  pair = compare._pair_ssegdepnet(True, image, 0, ohess_mode="threshold")
  rec = compare.check_equal(pair, image, labels, "cpu")
  assert rec["ok"] and rec["max_abs_diff"] <= compare.TOL, rec
