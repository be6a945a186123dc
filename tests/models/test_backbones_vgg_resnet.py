"""VGG16 / ResNet backbones at tiny widths: output shapes by hand, feature_info, frozen BN, registry.

Numerical parity with torchvision is in tests/parity/test_torchvision_parity.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.models import backbones, layers
from semdepth_jax.models.backbones import resnet, vgg
from semdepth_jax.weights import keymap

TINY_VGG = ((2, 2), (3, 3), (4, 4, 4), (5, 5, 5), (6, 6, 6))
TINY_RES = {"depths": (1, 2, 1, 1), "widths": (2, 3, 4, 5), "stem_width": 3}

# Spatial sizes (H, W) per feature for a 35 x 53 input, worked by hand from PyTorch's
# floor((n + 2p - d(k - 1) - 1) / s) + 1 (ceil with ceil_mode, minus a window starting in the padding).
VGG_SIZES = {
  # 2x2/2 floor pools: 35 -> 17 -> 8 -> 4 -> 2 -> 1; 53 -> 26 -> 13 -> 6 -> 3 -> 1.
  "torchvision": [(35, 53), (17, 26), (8, 13), (4, 6), (2, 3), (1, 1)],
  # 3x3/2 pad-1 ceil pools: 35 -> 18 -> 10 -> 6, then stride-1 pools; 53 -> 27 -> 14 -> 8.
  "deeplab_v2": [(35, 53), (18, 27), (10, 14), (6, 8), (6, 8), (6, 8)],
}
RES_SIZES = {
  # stem 7x7/2 pad 3: 35 -> 18, 53 -> 27; pool 3x3/2 pad 1: floor 9 / 14, ceil 10 / 14; 3x3/2 pad 1 halves up.
  ("floor", 32): [(18, 27), (9, 14), (5, 7), (3, 4), (2, 2)],
  ("ceil", 32): [(18, 27), (10, 14), (5, 7), (3, 4), (2, 2)],
  ("floor", 16): [(18, 27), (9, 14), (5, 7), (3, 4), (3, 4)],
  ("floor", 8): [(18, 27), (9, 14), (5, 7), (5, 7), (5, 7)],
  ("ceil", 8): [(18, 27), (10, 14), (5, 7), (5, 7), (5, 7)],
  ("none", 32): [(18, 27), (18, 27), (9, 14), (5, 7), (3, 4)],
}


def _shapes(module, size=(35, 53)):
  x = jnp.zeros((2, *size, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), x)
  return variables, jax.eval_shape(lambda v, x: module.apply(v, x), variables, x)


@pytest.mark.parametrize("variant", ["torchvision", "deeplab_v2"])
def test_vgg_shapes_and_feature_info(variant):
  classes = 3 if variant == "torchvision" else 0
  m = vgg.VGG(widths=TINY_VGG, num_classes=classes, hidden=8, variant=variant)
  _, out = _shapes(m)
  info = m.feature_info()
  assert sorted(i[0] for i in info) == sorted(out["features"])
  for (name, nominal, actual, chans), size in zip(info, VGG_SIZES[variant], strict=True):
    assert out["features"][name].shape == (2, *size, chans), name
    assert actual == (nominal if variant == "torchvision" else min(nominal, 8))
  assert [i[3] for i in info] == [2, 3, 4, 5, 6, 6]
  if classes:
    assert out["logits"].shape == (2, 3)
  else:
    assert "logits" not in out


def test_vgg_deeplab_paper_sizes():
  """docs/model_spec.md §2.1: 321 -> 161 -> 81 -> 41, then stride 1 (41 x 41 at pool5)."""
  m = vgg.VGG(widths=TINY_VGG, num_classes=0, variant="deeplab_v2")
  _, out = _shapes(m, (321, 321))
  got = [out["features"][n].shape[1] for n in vgg.FEATURE_NAMES]
  assert got == [321, 161, 81, 41, 41, 41]


def test_vgg_rejects_classifier_on_deeplab():
  with pytest.raises(ValueError, match="deeplab_v2 variant has no classifier"):
    vgg.VGG(num_classes=10, variant="deeplab_v2").feature_info()


@pytest.mark.parametrize(
  "pool,os_,mode",
  [
    ("floor", 32, "torchvision"),
    ("ceil", 32, "torchvision"),
    ("floor", 16, "torchvision"),
    ("floor", 8, "torchvision"),
    ("ceil", 8, "deeplab_v2"),
    ("none", 32, "torchvision"),
  ],
)
@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_resnet_shapes_and_feature_info(pool, os_, mode, block):
  m = resnet.ResNet(
    block=block,
    **TINY_RES,
    num_classes=4,
    stem_pool=pool != "none",
    ceil_mode=pool == "ceil",
    output_stride=os_,
    dilation_mode=mode,
  )
  _, out = _shapes(m)
  info = m.feature_info()
  expansion = 4 if block == "bottleneck" else 1
  assert [i[3] for i in info] == [3] + [w * expansion for w in TINY_RES["widths"]]
  nominal = [2, 4, 8, 16, 32]
  stem = 4 if pool != "none" else 2
  actual = [2] + [min(stem * 2**i, os_ if pool != "none" else stem * 2**i) for i in range(4)]
  assert [i[1] for i in info] == nominal
  assert [i[2] for i in info] == actual
  for (name, *_, chans), size in zip(info, RES_SIZES[(pool, os_)], strict=True):
    assert out["features"][name].shape == (2, *size, chans), name
  assert out["logits"].shape == (2, 4)


def test_resnet_dilation_plans():
  """torchvision replace_stride_with_dilation vs DeepLab-v2 (model_spec §3.1) first-block dilation."""
  tv = resnet.ResNet(depths=(1, 1, 3, 2), output_stride=8).stage_plan()
  dl = resnet.ResNet(depths=(1, 1, 3, 2), output_stride=8, dilation_mode="deeplab_v2").stage_plan()
  # (stride, first_dilation, dilation, downsample)
  assert tv[2] == [(1, 1, 2, True), (1, 2, 2, False), (1, 2, 2, False)]
  assert tv[3] == [(1, 2, 4, True), (1, 4, 4, False)]
  assert dl[2] == [(1, 2, 2, True), (1, 2, 2, False), (1, 2, 2, False)]
  assert dl[3] == [(1, 4, 4, True), (1, 4, 4, False)]
  assert tv[1] == dl[1] == [(2, 1, 1, True)]
  # Basic blocks: layer1 keeps 64 -> 64 at stride 1, so no projection (torchvision / wideresnet.py).
  basic = resnet.ResNet(block="basic", depths=(2, 1, 1, 1)).stage_plan()
  assert basic[0] == [(1, 1, 1, False), (1, 1, 1, False)]


def test_bottleneck_stride_placement():
  """stride_in_1x1 moves the stride from conv2 (3x3) to conv1 (1x1); shapes stay the same."""
  x = jnp.zeros((1, 9, 9, 4))
  for in_1x1, strided in ((False, "conv2"), (True, "conv1")):
    block = resnet.Bottleneck(2, stride=2, downsample=True, stride_in_1x1=in_1x1)
    v = jax.eval_shape(block.init, jax.random.key(0), x)
    y, inter = jax.eval_shape(
      lambda v, x, b=block: b.apply(v, x, capture_intermediates=True, mutable=["intermediates"]),
      v,
      x,
    )
    assert y.shape == (1, 5, 5, 8)
    sizes = {k: inter["intermediates"][k]["__call__"][0].shape[1] for k in ("conv1", "conv2")}
    assert sizes == ({"conv1": 5, "conv2": 5} if strided == "conv1" else {"conv1": 9, "conv2": 5})
    assert v["params"]["conv1"]["kernel"].shape[:2] == (1, 1)
    assert v["params"]["conv2"]["kernel"].shape[:2] == (3, 3)


def test_places_pool_window_needs_one_by_one():
  m = resnet.ResNet(block="basic", **TINY_RES, stem_pool=False, pool_window=14, num_classes=5)
  _, out = _shapes(m, (224, 224))  # layer4 at stride 16: 14 x 14 -> 1 x 1
  assert out["features"]["stride32"].shape[1:3] == (14, 14) and out["logits"].shape == (2, 5)
  _, out = _shapes(m, (321, 321))  # 21 x 21: AvgPool2d(14) still gives 1 x 1 (top-left window)
  assert out["logits"].shape == (2, 5)
  with pytest.raises(ValueError, match="pool_window=14"):
    _shapes(m, (480, 480))  # 30 x 30 -> 2 x 2: wideresnet.py's fc would fail too


def _random_variables(module, x, seed=0):
  """Variables shaped by ``init`` (no RNG compile): normal params, BN statistics in [0.5, 1.5]."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), x)
  params = jax.tree.map(lambda a: rng.normal(0, 0.3, a.shape).astype(np.float32), shapes["params"])
  stats = jax.tree.map(
    lambda a: rng.uniform(0.5, 1.5, a.shape).astype(np.float32), shapes.get("batch_stats", {})
  )
  return {"params": params, "batch_stats": stats}


def test_frozen_bn_keeps_statistics_and_affine_in_training():
  m = resnet.ResNet(block="bottleneck", **TINY_RES, num_classes=3, bn=layers.FROZEN_BN)
  x = np.random.default_rng(1).normal(size=(2, 33, 33, 3)).astype(np.float32)
  v = _random_variables(m, x)
  # Every BN variable (incl. scale / bias) is in batch_stats, so no optimiser step can reach it.
  assert not any("bn" in p for p in keymap.flatten(v["params"]))
  assert {p.rsplit("/", 1)[1] for p in keymap.flatten(v["batch_stats"])} == {
    "mean",
    "var",
    "scale",
    "bias",
  }

  def loss(params, batch_stats):
    out, new = m.apply(
      {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
    )
    return jnp.sum(out["logits"] ** 2), new

  (value, new), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
    v["params"], v["batch_stats"]
  )
  jax.tree.map(np.testing.assert_array_equal, new["batch_stats"], v["batch_stats"])
  assert jax.tree.structure(grads) == jax.tree.structure(v["params"])
  # Training output equals evaluation output (statistics are never the batch's).
  eval_out = jax.jit(lambda v: m.apply(v, x, train=False))(v)
  np.testing.assert_allclose(float(jnp.sum(eval_out["logits"] ** 2)), float(value), rtol=1e-5)

  # Control: trainable BN updates its running statistics in training.
  t = resnet.ResNet(block="bottleneck", **TINY_RES, num_classes=3)
  vt = _random_variables(t, x)
  _, newt = jax.jit(lambda v: t.apply(v, x, train=True, mutable=["batch_stats"]))(vt)
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), newt["batch_stats"], vt["batch_stats"])
  assert all(jax.tree.leaves(changed))


def test_vgg_dropout_only_in_training():
  m = vgg.VGG(widths=TINY_VGG, num_classes=3, hidden=16)
  x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
  v = _random_variables(m, x)
  run = jax.jit(lambda v, key: m.apply(v, x, train=True, rngs={"dropout": key})["logits"])
  a = jax.jit(lambda v: m.apply(v, x)["logits"])(v)
  b, c = run(v, jax.random.key(2)), run(v, jax.random.key(3))
  assert not np.allclose(a, b) and not np.allclose(b, c)


REFERENCE_COUNTS = {
  # torchvision's models (and, for the variants, torchvision's layers without the classifier).
  "vgg16": 138_357_544,
  "vgg16_deeplab": 138_357_544
  - (25088 * 4096 + 4096)
  - (4096 * 4096 + 4096)
  - (4096 * 1000 + 1000),
  "resnet18": 11_689_512,
  "resnet50": 25_557_032,
  "resnet101": 44_549_160,
  "resnet18_places365": 11_689_512 - 513 * 1000 + 513 * 365,
}


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_registered_parameter_counts(name):
  m = backbones.get_backbone_entry(name).build()
  v, _ = _shapes(m, (224, 224))
  assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(v["params"])) == REFERENCE_COUNTS[name]


def test_resnet101_deeplab_entry():
  """model_spec §3.1: Caffe strides, ceil stem pool, output stride 8, frozen BN, no fc, Caffe BGR input."""
  entry = backbones.get_backbone_entry("resnet101_deeplab")
  m = entry.build()
  assert (m.stride_in_1x1, m.ceil_mode, m.output_stride, m.num_classes) == (True, True, 8, 0)
  assert m.bn.frozen and m.dilation_mode == "deeplab_v2"
  assert entry.preprocessing() == backbones.CAFFE_BGR
  v, out = _shapes(m, (321, 321))
  # 321 -> 161 -> 81 (ceil pool) -> 41 -> 41 -> 41.
  assert [out["features"][n].shape[1] for n in resnet.FEATURE_NAMES] == [161, 81, 41, 41, 41]
  # 101 layers: (3 + 4 + 23 + 3) * 3 convs + stem conv + 4 projections, all without bias.
  paths = keymap.flatten(v["params"])
  assert len(paths) == 33 * 3 + 1 + 4 and all(p.endswith("/kernel") for p in paths)
  # ImageNet weights carry an fc; the key table drops it.
  drops = [r.source for r in entry.key_table() if r.kind == "drop"]
  assert drops == ["fc.weight", "fc.bias"]


def test_registry_names_and_preprocessing():
  expected = {
    "vgg16": backbones.IMAGENET,
    "vgg16_deeplab": backbones.CAFFE_BGR,
    "resnet18": backbones.IMAGENET,
    "resnet50": backbones.IMAGENET,
    "resnet101": backbones.IMAGENET,
    "resnet101_deeplab": backbones.CAFFE_BGR,
    "resnet18_places365": backbones.IMAGENET,
  }
  for name, prep in expected.items():
    entry = backbones.get_backbone_entry(name)
    assert entry.preprocessing() == prep, name
    assert entry.reference
