"""Tests for DS-SIDENet (paper 004; docs/model_spec.md §5.1-§5.3, §7.5)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax import depth_bins
from semdepth_jax.models import ds_sidenet, get_model
from semdepth_jax.models.contract import decode_options

K = 68  # docs/model_spec.md §5.3: NYU / ScanNet bins (0.7-10 m).
TINY = {"width_divisor": 16, "sam_k": 4}


def key(seed):
  return jax.random.key(seed, impl="unsafe_rbg")


def n_params(tree):
  return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


# ---- Parameter counts derived by hand from paper Tables 1-2 (bias-free convs + BN scale/bias). ----


def convbn(k, cin, cout):
  return k * k * cin * cout + 2 * cout


def dw(cin, cout):  # depthwise 3x3 + BN, pointwise 1x1 + BN
  return 9 * cin + 2 * cin + cin * cout + 2 * cout


def upproj(cin, cout):  # two 5x5 branches + the 3x3 of branch A, each with BN
  return 2 * (25 * cin * cout + 2 * cout) + 9 * cout * cout + 2 * cout


def upproj_con(cin, cout, skip):  # upproj + 3x3 merge of [U, Y, RGB] + BN
  return upproj(cin, cout) + convbn(3, cout + skip + 3, cout)


def sam(c, n_dilations):  # 3 AM modules: n dilated 3x3 convbn + two 1x1 convbn
  return 3 * (n_dilations * convbn(3, c, c) + 2 * convbn(1, c, c))


def output(cin, cout):  # 3x3 conv with bias
  return 9 * cin * cout + cout


def table1(high, w=lambda c: c):
  """Encoder, Table 1: block by block (``w`` maps a paper width to the built one)."""
  n = convbn(3, 3, w(32)) + convbn(3, w(32), w(64))  # block 1
  n += 3 * dw(w(64), w(64)) + dw(w(64), w(128))  # block 2
  n += 3 * dw(w(128), w(128)) + dw(w(128), w(256))  # block 3 (stride only differs)
  n += (
    dw(w(256), w(32)) + 11 * dw(w(32), w(32)) + dw(w(32), w(256))
  )  # block 4: [dw 32 d2] x 12, dw 256
  n += dw(w(256), w(256)) + convbn(1, w(256), w(128 if high else 512))  # block 5
  return n


def table2_branch(high, out_channels, w=lambda c: c):
  """One decoder branch, Table 2 + the output layer; skips per docs/model_spec.md §5.2."""
  if not high:
    # in 512 @1/32; skips: block4 (256), block3 (256), block2 (128), block1 (64).
    n = upproj_con(w(512), w(256), w(256)) + upproj_con(w(256), w(128), w(256))
    n += upproj_con(w(128), w(64), w(128)) + upproj_con(w(64), w(32), w(64))
    return n + upproj(w(32), w(16)) + output(w(16), out_channels)
  # in 128 @1/4; skips: block5 (128), block4 (256), SAM, block1 (64). SAM k = 16: 8 dilated convs.
  n = upproj_con(w(128), w(64), w(128)) + upproj_con(w(64), w(32), w(256)) + sam(w(32), 8)
  n += upproj_con(w(32), w(16), w(64))
  return n + upproj(w(16), w(8)) + output(w(8), out_channels)


@pytest.mark.parametrize("variant", ["low", "high"])
def test_parameter_count_follows_tables_1_and_2(variant):
  high = variant == "high"
  expected = table1(high) + table2_branch(high, K + 1) + table2_branch(high, 1)
  model = get_model("ds_sidenet", variant=variant)
  image = jax.ShapeDtypeStruct((1, 240, 320, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(key(0), x), image)
  assert n_params(variables["params"]) == expected
  enc = n_params(variables["params"]["encoder"])
  assert enc == table1(high)
  # Per-block check of the encoder so a miscount points at the table row.
  blocks = {}
  for name, sub in variables["params"]["encoder"].items():
    b = name.split("_")[0]
    blocks[b] = blocks.get(b, 0) + n_params(sub)
  assert blocks["block4"] == dw(256, 32) + 11 * dw(32, 32) + dw(32, 256)
  assert blocks["block5"] == dw(256, 256) + convbn(1, 256, 128 if high else 512)


def test_min_width_floors_every_reduced_layer():
  # Tiny widths (divisor 16) end the low-range decoder in 2- and 1-channel layers; min_width = 8 floors every
  # layer at 8 channels. Counts from the tables with each paper width c built as max(8, c // 16).
  for min_width, w in ((1, lambda c: max(1, c // 16)), (8, lambda c: max(8, c // 16))):
    model = get_model("ds_sidenet", variant="low", width_divisor=16, min_width=min_width)
    image = jax.ShapeDtypeStruct((1, 64, 96, 3), jnp.float32)
    params = jax.eval_shape(lambda x, m=model: m.init(key(0), x), image)["params"]
    assert n_params(params["encoder"]) == table1(False, w), min_width
    assert n_params(params["reg"]) == table2_branch(False, 1, w), min_width
    assert n_params(params["cls"]) == table2_branch(False, K + 1, w), min_width
    widths = [
      a.shape[-1]
      for p, a in jax.tree_util.tree_leaves_with_path(params)
      if "kernel" in str(p[-1]) and "output" not in str(p)  # all but the output layers
    ]
    assert min(widths) == (1 if min_width == 1 else 8)
  with pytest.raises(ValueError, match="min_width must be >= 1, got 0"):
    get_model("ds_sidenet", min_width=0).init(key(0), jnp.zeros((1, 32, 32, 3)))


def test_ablation_switches_change_the_count_by_the_merge_inputs():
  image = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)

  def count(**kw):
    m = get_model("ds_sidenet", branches=("reg",), depth_output="metres", **kw)
    return n_params(jax.eval_shape(lambda x: m.init(key(0), x), image)["params"])

  full = count()
  # Without the RGB skip each merge conv loses 3 input channels: 9 * 3 * cout per upproj-con block.
  assert full - count(use_rgb=False) == 9 * 3 * (256 + 128 + 64 + 32)
  assert full - count(use_skip=False) == 9 * (256 * 256 + 256 * 128 + 128 * 64 + 64 * 32)
  # Neither: plain upproj blocks (Table 7 row 2), no merge convs at all.
  merges = sum(convbn(3, c + s + 3, c) for c, s in ((256, 256), (128, 256), (64, 128), (32, 64)))
  assert full - count(use_skip=False, use_rgb=False) == merges


# ---- upproj: fast four-conv form vs literal unpool + 5x5 conv. ----


def numpy_unpool_conv5(x, w):
  b, h, wd, c = x.shape
  u = np.zeros((b, 2 * h, 2 * wd, c), np.float64)
  u[:, ::2, ::2] = x
  up = np.pad(u, ((0, 0), (2, 2), (2, 2), (0, 0)))
  out = np.zeros((b, 2 * h, 2 * wd, w.shape[-1]))
  for i in range(5):
    for j in range(5):
      out += np.einsum("bhwc,co->bhwo", up[:, i : i + 2 * h, j : j + 2 * wd], w[i, j])
  return out


@pytest.mark.parametrize("impl", ["fast", "literal"])
@pytest.mark.parametrize("hw", [(3, 4), (5, 5), (1, 2)])
def test_unpool_conv5_matches_numpy(impl, hw):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, *hw, 3)).astype(np.float32)
  w = rng.standard_normal((5, 5, 3, 4)).astype(np.float32)
  got = ds_sidenet.unpool_conv5(jnp.asarray(x), jnp.asarray(w), impl)
  np.testing.assert_allclose(np.asarray(got), numpy_unpool_conv5(x, w), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale", [1, 2])
def test_fast_and_literal_upproj_blocks_agree(scale):
  x = jax.random.normal(key(1), (2, 5, 7, 6))
  fast = ds_sidenet.UpProj(4, scale, "fast")
  lit = ds_sidenet.UpProj(4, scale, "literal")
  v = fast.init(key(0), x)
  a, b = fast.apply(v, x), lit.apply(v, x)
  assert a.shape == (2, 5 * scale, 7 * scale, 4)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # ~1 min of eager compilation on 2 loaded cores; the block-level test above is fast.
def test_fast_and_literal_upproj_models_agree():
  x = jax.random.uniform(key(1), (1, 32, 32, 3))
  kw = {"branches": ("reg",), "depth_output": "metres", **TINY}
  fast = get_model("ds_sidenet", upproj_impl="fast", **kw)
  lit = get_model("ds_sidenet", upproj_impl="literal", **kw)
  v = fast.init(key(0), x)
  a, b = fast.apply(v, x)["depth"], lit.apply(v, x)["depth"]
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


def test_interleave_layout_hand_made():
  a, b, c, d = (jnp.full((1, 1, 1, 1), v) for v in (1.0, 2.0, 3.0, 4.0))
  out = np.asarray(ds_sidenet.interleave2x(a, b, c, d))[0, :, :, 0]
  np.testing.assert_array_equal(out, [[1, 3], [2, 4]])
  x = jnp.arange(4.0).reshape(1, 2, 2, 1)
  np.testing.assert_array_equal(
    np.asarray(ds_sidenet.unpool2x(x))[0, :, :, 0],
    [[0, 0, 1, 0], [0, 0, 0, 0], [2, 0, 3, 0], [0, 0, 0, 0]],
  )


# ---- Shapes, SAM, contract. ----


@pytest.mark.parametrize("variant", ["low", "high"])
@pytest.mark.parametrize("hw", [(60, 80), (37, 45)])
def test_output_shapes_at_any_size(variant, hw):
  m = get_model("ds_sidenet", variant=variant, **TINY)
  x = jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
  out = jax.eval_shape(lambda x: m.apply(m.init(key(0), x), x), x)
  assert out["depth"].shape == (2, *hw, 1)
  assert out["depth_logits"].shape == (2, *hw, K + 1)


def test_high_variant_keeps_quarter_resolution_and_has_sam():
  m = get_model("ds_sidenet", variant="high", **TINY)
  x = jax.ShapeDtypeStruct((1, 64, 96, 3), jnp.float32)
  v = jax.eval_shape(lambda x: m.init(key(0), x), x)
  assert "block3" in v["params"]["cls"] and "am2" in v["params"]["cls"]["block3"]
  assert "am3" not in v["params"]["cls"]["block3"]
  _, state = jax.eval_shape(
    lambda v, x: m.apply(v, x, mutable=["intermediates"], capture_intermediates=True), v, x
  )
  enc = state["intermediates"]["encoder"]["__call__"][0]
  assert [f.shape[1:3] for f in enc] == [(32, 48), (16, 24), (16, 24), (16, 24), (16, 24)]


def test_am_dilations():
  assert ds_sidenet.am_dilations(16) == (1, 2, 2, 4, 4, 8, 8, 16)
  assert ds_sidenet.am_dilations(2) == (1, 2)
  with pytest.raises(ValueError, match="power of two"):
    ds_sidenet.am_dilations(12)


def test_expectation_decode_of_one_hot_is_the_bin_value():
  m = get_model("ds_sidenet")
  q = (math.log10(10.0) - math.log10(0.7)) / K
  for j in (0, 17, K):
    logits = jnp.full((1, 1, 1, K + 1), -1e4).at[..., j].set(1e4)
    got = float(m.decode({"depth_logits": logits})["depth"][0, 0, 0])
    assert got == pytest.approx(10 ** (math.log10(0.7) + j * q), rel=1e-6)


def test_quantisation_round_trip_within_half_a_bin():
  bins = depth_bins.make_bins("log10", 0.7, 10.0, K)
  q = (1.0 - math.log10(0.7)) / K
  y = np.exp(np.random.default_rng(0).uniform(np.log(0.7), np.log(10.0), 1000)).astype(np.float32)
  idx = depth_bins.encode(bins, jnp.asarray(y))
  back = np.asarray(depth_bins.decode_index(bins, idx))
  assert np.max(np.abs(np.log10(back) - np.log10(y))) <= q / 2 + 1e-6


def test_decode_switches_and_regression_only_model():
  q = (math.log10(10.0) - math.log10(0.7)) / K
  logits = jnp.full((1, 1, 2, K + 1), -1e4).at[0, 0, 0, 10].set(1e4).at[0, 0, 1, 20].set(1e4)
  reg = jnp.array([3.0, 1.0]).reshape(1, 1, 2, 1)
  soft = 10 ** (math.log10(0.7) + np.array([10, 20]) * q)
  out = {"depth_logits": logits, "depth": reg}
  for mode, want in (("regression", [3.0, 1.0]), ("average", 0.5 * (soft + [3.0, 1.0]))):
    m = get_model("ds_sidenet", bin_decode=mode)
    np.testing.assert_allclose(np.asarray(m.decode(out)["depth"])[0, 0], want, rtol=1e-6)
  assert decode_options(m)["depth_bins"] == ("log10", 0.7, 10.0, 68)
  r = get_model("ds_sidenet", branches=("reg",), depth_output="metres", **TINY)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  out = jax.eval_shape(lambda x: r.apply(r.init(key(0), x), x), x)
  assert set(out) == {"depth", "aux"}
  assert r.decode({"depth": reg})["depth"].shape == (1, 1, 2)


@pytest.mark.parametrize(
  "kw, match",
  [
    ({"variant": "mid"}, "variant must be one of"),
    ({"branches": ("cls", "seg")}, "branches must be"),
    ({"branches": ("reg",)}, "needs the 'cls' branch"),
    ({"branches": ("cls",), "bin_decode": "regression"}, "needs the 'reg' branch"),
    ({"upproj_impl": "tf"}, "upproj_impl must be one of"),
  ],
)
def test_bad_configuration_errors(kw, match):
  m = get_model("ds_sidenet", **kw)
  with pytest.raises(ValueError, match=match):
    m.init(key(0), jnp.zeros((1, 32, 32, 3)))
