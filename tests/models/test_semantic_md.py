"""Semantic-MD (paper 003): parameter counts from layer tables, variants, input encodings, extended stem.

Parameter counts at the paper's widths are derived here from the timm EfficientNet-B4 count (16,742,216
without the head; tests/parity/test_smp_semantic_md.py checks it against timm) plus the decoder and head
layer tables of docs/model_spec.md §4.1-§4.4, written out below. Everything else runs at tiny widths.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax import resize
from semdepth_jax.models import get_model
from semdepth_jax.models import semantic_md as smd

B4_FEATURES_ONLY = 16_742_216
"""timm ``efficientnet_b4`` parameters (19,341,616) minus conv_head, bn2 and the 1000-way classifier."""
B4_CHANNELS = (24, 32, 56, 160, 448)  # strides 2 .. 32 (docs/model_spec.md §4.1)
DECODER = (256, 128, 64, 32, 16)

TINY = {
  "encoder": {"name": "efficientnet_b0", "width_multiplier": 0.25, "depth_multiplier": 0.25},
  "decoder_channels": (16, 8, 8, 4, 4),
  "aspp_channels": 8,
}


TINY_RESNET = {"name": "resnet50", "depths": (1, 1, 1, 1), "widths": (8, 8, 8, 8), "stem_width": 8}


def _unet_decoder_params(enc=B4_CHANNELS, dec=DECODER):
  """smp UnetDecoder: per block conv3x3 (in + skip -> out, no bias) + BN, conv3x3 out -> out + BN."""
  skips = list(enc[:-1])[::-1] + [0]
  ins = [enc[-1], *dec[:-1]]
  total = 0
  for cin, skip, cout in zip(ins, skips, dec, strict=True):
    total += 9 * (cin + skip) * cout + 2 * cout + 9 * cout * cout + 2 * cout
  return total


def _head(cin, cout, k=3):
  return k * k * cin * cout + cout


def _aspp_params(cin=448, c=256):
  """ASPP 1x1 + 3 atrous 3x3 + pooling 1x1 (each + BN), project 1x1 5c -> c + BN, conv3x3 + BN."""
  return (
    (cin * c + 2 * c)
    + 3 * (9 * cin * c + 2 * c)
    + (cin * c + 2 * c)
    + (5 * c * c + 2 * c)
    + (9 * c * c + 2 * c)
  )


SEMCONV = (
  9 * 1 * 8 + 2 * 8  # conv 3x3 1 -> 8, BN
  + 8 * 48 + 2 * 48  # MBConv expand 1x1 8 -> 48, BN
  + 9 * 48 + 2 * 48  # depthwise 3x3, BN
  + (48 * 2 + 2) + (2 * 48 + 48)  # squeeze-excitation fc1, fc2 (with bias)
  + 48 * 8 + 2 * 8  # project 1x1 48 -> 8, BN
  + 8 * 3 + 2 * 3  # conv 1x1 8 -> 3, BN
)  # fmt: skip


def _params(model, size=(64, 64)):
  shapes = jax.eval_shape(
    lambda x: model.init({"params": jax.random.key(0)}, x, train=False),
    jax.ShapeDtypeStruct((1, *size, 3), jnp.float32),
  )
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"])), shapes


def _numpy_variables(model, x, seed=0):
  """Random variables of ``model``'s shapes drawn with numpy (eager flax init compiles one XLA program per
  parameter shape, which takes a minute on a loaded CPU); BN variances positive."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda a: model.init(jax.random.key(0), a), x)

  def draw(path, s):
    if "var" in jax.tree_util.keystr(path):
      return jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype)
    return jnp.asarray(rng.normal(0.0, 0.2, s.shape), s.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize(
  "name,overrides,expected",
  [
    ("baseline", {}, B4_FEATURES_ONLY + _unet_decoder_params() + _head(16, 1)),
    (
      "1hot-40",
      {"input_encoding": "onehot", "onehot_classes": smd.top_classes(40)},
      B4_FEATURES_ONLY + 9 * 40 * 48 + _unet_decoder_params() + _head(16, 1),
    ),
    (
      "sem. conv.",
      {"input_encoding": "semconv"},
      B4_FEATURES_ONLY + SEMCONV + 9 * 3 * 48 + _unet_decoder_params() + _head(16, 1),
    ),
    (
      "2-head",
      {"tasks": ("depth", "semantic"), "depth_activation": "linear", "init_scheme": "torch"},
      B4_FEATURES_ONLY + 2 * _unet_decoder_params() + _head(16, 1) + _head(16, 40),
    ),
    (
      "3-head",
      {"tasks": ("depth", "semantic", "contour"), "depth_activation": "linear"},
      B4_FEATURES_ONLY + 3 * _unet_decoder_params() + _head(16, 1) + _head(16, 40) + _head(16, 2),
    ),
    (
      "DeepLab",
      {"architecture": "deeplabv3", "head_kernel": 1},
      B4_FEATURES_ONLY + _aspp_params() + _head(256, 1, k=1),
    ),
  ],
)
def test_parameter_counts_at_paper_widths(name, overrides, expected):
  n, _ = _params(get_model("semantic_md", **overrides))
  assert n == expected, name


def test_semantic_conv_and_extended_stem_shapes():
  _, shapes = _params(get_model("semantic_md", input_encoding="semconv"))
  p = shapes["params"]
  assert p["stem_extra"]["kernel"].shape == (3, 3, 3, 48)
  assert p["encoder"]["conv_stem"]["kernel"].shape == (
    3,
    3,
    3,
    48,
  )  # the pretrained slice, unchanged
  assert p["semconv"]["mb_dw"]["kernel"].shape == (3, 3, 1, 48)
  assert p["semconv"]["mb_se_fc1"]["kernel"].shape == (1, 1, 48, 2)


@pytest.mark.parametrize(
  "overrides,keys",
  [
    ({}, {"depth"}),
    ({"tasks": ("depth", "semantic"), "depth_activation": "linear"}, {"depth", "seg_logits"}),
    ({"tasks": ("depth", "semantic", "contour")}, {"depth", "seg_logits", "contour_logits"}),
    ({"tasks": ("depth", "sobel")}, {"depth", "sobel_logits"}),
    ({"tasks": ("semantic",)}, {"seg_logits"}),
    ({"architecture": "deeplabv3", "head_kernel": 1}, {"depth"}),
    ({"architecture": "deeplabv3", "tasks": ("depth", "semantic")}, {"depth", "seg_logits"}),
    ({"input_encoding": "semconv"}, {"depth"}),
  ],
)
def test_variants_output_the_heads_at_input_size(overrides, keys):
  model = get_model("semantic_md", **TINY, **overrides)
  x = jax.ShapeDtypeStruct((2, 32, 48, 3), jnp.float32)
  lab = jax.ShapeDtypeStruct((2, 32, 48), jnp.int32)
  v = jax.eval_shape(lambda a, b: model.init(jax.random.key(1), a, b), x, lab)
  out, _ = jax.eval_shape(
    lambda v, a, b: model.apply(
      v, a, b, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(3)}
    ),
    v,
    x,
    lab,
  )
  got = set(out) - {"aux"} | {k for k in out["aux"] if k.endswith("_logits")}
  assert got == keys
  channels = {"depth": 1, "seg_logits": 40, "contour_logits": 2, "sobel_logits": 2}
  for k in keys:
    arr = out[k] if k in out else out["aux"][k]
    assert arr.shape == (2, 32, 48, channels[k]) and arr.dtype == jnp.float32


def test_baseline_depth_is_a_sigmoid_times_15_m():
  model = get_model(
    "semantic_md", **{**TINY, "encoder": TINY_RESNET}
  )  # cheap encoder: only the head
  x = jax.random.uniform(jax.random.key(0), (2, 32, 48, 3))
  out = model.apply(_numpy_variables(model, x), x)
  d = np.asarray(out["depth"])
  assert d.min() > 0.0 and d.max() < 1.0
  np.testing.assert_allclose(np.asarray(model.decode(out)["depth"]), 15.0 * d[..., 0], rtol=1e-6)


def _labels():
  lab = np.full((1, 6, 8), 5, np.int32)  # chair (NYU-40 id 6)
  lab[0, :, 4:] = 0  # wall
  lab[0, 0, :] = 21  # ceiling
  lab[0, 5, :2] = 255  # unlabelled
  return lab


@pytest.mark.parametrize("encoding", ["onehot", "concat", "contour", "semconv"])
def test_input_encodings_from_ground_truth(encoding):
  lab = _labels()
  src = smd.source_lib.SemanticSource()
  sem = src.resolve(jnp.zeros((1, 6, 8, 3)), jnp.asarray(lab), num_classes=40, where="t")
  planes = np.asarray(smd.encode_semantics(encoding, sem, src, 40, smd.top_classes(3)))
  if encoding == "onehot":  # wall, floor, ceiling
    want = np.stack([lab[0] == 0, lab[0] == 1, lab[0] == 21], -1).astype(np.float32)
    np.testing.assert_array_equal(planes[0], want)
  elif encoding == "concat":
    raw = np.where(lab[0] == 255, 0, lab[0] + 1)  # R3: raw ids -1..40 clipped at 0, / 40
    np.testing.assert_allclose(planes[0, ..., 0], raw / 40.0, rtol=1e-7)
  elif encoding == "contour":
    pad = np.pad(lab[0], 1, mode="edge")
    win = np.stack([pad[i : i + 6, j : j + 8] for i in range(3) for j in range(3)])
    np.testing.assert_array_equal(planes[0, ..., 0], (win.max(0) > win.min(0)).astype(np.float32))
  else:  # the raw NYU-40 id map of R3 (-1 = unlabelled) that SemanticConv reads
    np.testing.assert_array_equal(planes[0, ..., 0], np.where(lab[0] == 255, -1, lab[0] + 1))


def test_semantic_conv_output_is_three_sigmoid_planes():
  conv = smd.SemanticConv()
  ids = jnp.asarray(_labels()[..., None] % 41, jnp.float32)
  v = conv.init(jax.random.key(0), ids)
  out = conv.apply(v, ids)
  assert out.shape == (1, 6, 8, 3)
  assert np.asarray(out).min() > 0.0 and np.asarray(out).max() < 1.0


def test_extended_stem_init_and_one_convolution_over_the_concatenated_input():
  # R3 extend_first_convolution: the new slices keep nn.Conv2d's default init over fan-in 9 * (3 + E).
  classes = smd.top_classes(20)
  model = get_model("semantic_md", **TINY, input_encoding="onehot", onehot_classes=classes)
  lab = np.random.default_rng(0).integers(0, 40, (2, 16, 16)).astype(np.int32)
  x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  v = model.init(jax.random.key(2), x, jnp.asarray(lab))
  k_extra = np.asarray(v["params"]["stem_extra"]["kernel"])
  bound = 1.0 / math.sqrt(9 * (3 + 20))
  assert k_extra.shape == (3, 3, 20, 8) and np.abs(k_extra).max() <= bound
  assert np.abs(k_extra).max() > 0.9 * bound  # uniform over the whole range, not a narrower law
  # conv_stem(rgb) + stem_extra(planes) == one convolution of [rgb, planes] with the stacked kernel.
  _, inter = model.apply(
    v, x, jnp.asarray(lab), capture_intermediates=True, mutable=["intermediates"]
  )
  inter = inter["intermediates"]
  stem = inter["encoder"]["conv_stem"]["__call__"][0] + inter["stem_extra"]["__call__"][0]
  rgb = (np.asarray(x) - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  planes = np.stack([lab == c for c in classes], -1).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(inter["__call__"][0]["aux"]["semantic_input"]), planes)
  kernel = np.concatenate([np.asarray(v["params"]["encoder"]["conv_stem"]["kernel"]), k_extra], 2)
  ref = jax.lax.conv_general_dilated(
    jnp.asarray(np.concatenate([rgb, planes], -1), jnp.float32),
    jnp.asarray(kernel),
    (2, 2),
    ((1, 1), (1, 1)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=jax.lax.Precision.HIGHEST,
  )
  np.testing.assert_allclose(np.asarray(stem), np.asarray(ref), atol=1e-5)


def test_top_classes_follow_hypersim_prevalence():
  assert smd.top_classes(3) == (0, 1, 21)  # wall, floor, ceiling (NYU-40 ids 1, 2, 22)
  assert len(set(smd.top_classes(40))) == 40 and sorted(smd.top_classes(40)) == list(range(40))
  with pytest.raises(ValueError, match="1..40"):
    smd.top_classes(41)
  with pytest.raises(ValueError, match="40 NYU-40"):
    smd.top_classes(3, num_classes=14)


def test_upsampling_helpers_follow_pytorch():
  x = jnp.asarray([[0.0, 1.0], [2.0, 3.0]])[None, ..., None]
  # align_corners=True, 2 -> 3: the middle sample is the mean of its neighbours.
  got = smd.upsample_bilinear_align_corners(x, (3, 3))[0, ..., 0]
  np.testing.assert_allclose(got, [[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]], atol=1e-6)
  # nearest, 2 -> 5 (PyTorch: floor(i * 2 / 5) = 0, 0, 0, 1, 1).
  near = smd.upsample_nearest(x, (2, 5))[0, 0, :, 0]
  np.testing.assert_array_equal(near, [0.0, 0.0, 0.0, 1.0, 1.0])
  # ... unlike the data rule (aligned centres: floor((i + 0.5) * 2 / 5) = 0, 0, 1, 1, 1) ...
  np.testing.assert_array_equal(resize.nearest(x, (2, 5))[0, 0, :, 0], [0.0, 0.0, 1.0, 1.0, 1.0])
  # ... with which it agrees for x2 (every pixel twice).
  np.testing.assert_array_equal(smd.upsample_nearest(x, (4, 4)), resize.nearest(x, (4, 4)))


@pytest.mark.parametrize(
  "overrides,match",
  [
    ({"input_encoding": "onehot", "semantic_source": "none"}, "semantic_source is 'none'"),
    ({"semantic_source": "gt"}, "input_encoding is 'none'"),
    ({"tasks": ("depth", "depth")}, "tasks must be distinct"),
    ({"architecture": "fpn"}, "architecture must be one of"),
    ({"input_encoding": "onehot", "onehot_classes": (0, 40)}, r"ids must be in \[0, 40\)"),
    ({"input_encoding": "onehot", "semantic_source": {"sorce": "gt"}}, "unknown keys"),
  ],
)
def test_bad_configurations_name_the_problem(overrides, match):
  model = get_model("semantic_md", **TINY, **overrides)
  with pytest.raises(ValueError, match=match):
    model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 32), jnp.int32))


def test_ground_truth_source_needs_labels_outside_init():
  model = get_model("semantic_md", **TINY, input_encoding="contour")
  x = jnp.zeros((1, 32, 32, 3))
  v = model.init(jax.random.key(0), x)  # init works without labels (only shapes matter)
  with pytest.raises(ValueError, match="needs labels"):
    model.apply(v, x)


def test_encoder_without_stem_hook_is_rejected_for_input_planes():
  model = get_model(
    "semantic_md",
    encoder=TINY_RESNET,
    decoder_channels=(8, 8, 8, 8, 8),
    input_encoding="concat",
  )
  with pytest.raises(ValueError, match="cannot take extra input planes"):
    model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 32), jnp.int32))
