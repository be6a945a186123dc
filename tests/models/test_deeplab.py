"""DeepLab-v2 (paper 002): parameter counts, output stride, frozen BN through a train step, bin decoding.

References are independent of the code: torchvision's published ResNet-101 count, PyTorch conv / ceil-mode
pool arithmetic worked by hand, SID edges ``t_c = 80 ** (c / 71)`` evaluated by hand, and numpy.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax import depth_bins as db
from semdepth_jax import losses
from semdepth_jax.models import deeplab, get_model
from semdepth_jax.train import optim
from semdepth_jax.train import step as step_lib
from semdepth_jax.train.state import create_state

# The same Caffe / OS-8 ResNet structure at tiny widths (bottleneck output = 4 x width).
TINY = {
  "name": "resnet101_deeplab",
  "depths": (1, 1, 1, 1),
  "widths": (2, 2, 3, 4),
  "stem_width": 4,
}

TORCHVISION_RESNET101 = (
  44_549_160  # torchvision.models.resnet101(): parameters incl. fc 2048 -> 1000.
)
FC = 2048 * 1000 + 1000


def _aspp(classes):
  """Four 3x3 convolutions 2048 -> classes with bias (docs/model_spec.md §3.1)."""
  return 4 * (3 * 3 * 2048 * classes + classes)


def _frozen_bn_affine():
  """BatchNorm scale + bias of ResNet-101 (torchvision counts them as parameters; here batch_stats).

  Per stage (blocks n, width p): each bottleneck has BNs of p, p, 4p channels, the first block's
  projection one of 4p; plus the stem's 64: 64 + sum(6 p n + 4 p) = 52,672 channels.
  """
  channels = 64 + sum(
    6 * p * n + 4 * p for n, p in zip((3, 4, 23, 3), (64, 128, 256, 512), strict=True)
  )
  return 2 * channels


def _count(tree, pred=lambda path: True):
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  return sum(int(np.prod(x.shape)) for p, x in leaves if pred(p))


def _abstract(model, size=(65, 97)):
  x = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  return variables, jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)


@pytest.mark.parametrize(
  "name,overrides,head",
  [
    ("deeplab_sid", {}, _aspp(71)),
    ("deeplab_v2", {"num_classes": 21}, _aspp(21)),
    ("deeplab_sid", {"heads": ("depth_bins", "seg"), "num_classes": 19}, _aspp(71) + _aspp(19)),
    ("deeplab_regression", {}, _aspp(1)),
  ],
)
def test_parameter_count_is_torchvision_resnet101_minus_fc_plus_aspp(name, overrides, head):
  variables, _ = _abstract(get_model(name, **overrides))
  bn_affine = _count(variables["batch_stats"], lambda p: p[-1].key in ("scale", "bias"))
  assert bn_affine == _frozen_bn_affine() == 105_344
  assert _count(variables["params"]) + bn_affine == TORCHVISION_RESNET101 - FC + head
  # Frozen BN: no BatchNorm variable is a parameter (no optimiser, no weight decay touches them).
  assert not any(
    "bn" in str(p) for p, _ in jax.tree_util.tree_leaves_with_path(variables["params"])
  )
  if name == "deeplab_sid" and not overrides:
    assert _count(variables["params"]) + bn_affine == 47_735_132


def test_paper_network_output_stride_8_on_odd_input():
  # 65 x 97: stem 7x7/2 pad 3 -> ceil(n / 2) = 33 x 49; ceil-mode 3x3/2 pad 1 pool -> ceil(32 / 2) + 1 =
  # 17, ceil(48 / 2) + 1 = 25; layer2's stride-2 1x1 -> ceil(17 / 2) = 9, ceil(25 / 2) = 13; layer3/4
  # dilated (stride 1).
  model = get_model("deeplab_sid", upsample=False)
  _, out = _abstract(model)
  assert out["depth_logits"].shape == (1, 9, 13, 71)
  _, up = _abstract(get_model("deeplab_sid"))
  assert up["depth_logits"].shape == (1, 65, 97, 71)


@pytest.mark.parametrize(
  "size,stride8",
  [
    # 39 x 53: stem 20 x 27; ceil pool ceil(19 / 2) + 1 = 11 (floor mode: 10), 14; layer2 6 (floor: 5), 7.
    ((39, 53), (6, 7)),
    # 33 x 47: stem 17 x 24; pool 9 x 13; layer2 5 x 7.
    ((33, 47), (5, 7)),
  ],
)
def test_tiny_network_output_stride_and_upsampling(size, stride8):
  model = get_model("deeplab_sid", backbone=TINY, heads=("depth_bins", "seg"), num_classes=5)
  x = jax.random.uniform(jax.random.key(1), (2, *size, 3))
  variables = model.init(jax.random.key(0), x)
  out = model.apply(variables, x)
  assert out["depth_logits"].shape == (2, *size, 71)
  assert out["seg_logits"].shape == (2, *size, 5)
  low = get_model(
    "deeplab_sid", backbone=TINY, heads=("depth_bins", "seg"), num_classes=5, upsample=False
  ).apply(variables, x)
  assert low["depth_logits"].shape == (2, *stride8, 71)
  # The upsampled logits are the bilinear (half-pixel) resize of the stride-8 ones.
  ref = jax.image.resize(low["seg_logits"], (2, *size, 5), "bilinear", antialias=False)
  np.testing.assert_allclose(out["seg_logits"], ref, rtol=1e-5, atol=1e-6)
  assert model.decode(out)["depth"].shape == (2, *size)


def test_aspp_is_the_sum_of_four_dilated_convolutions():
  x = jax.random.normal(jax.random.key(0), (1, 9, 11, 3))
  aspp = deeplab.ASPPv2(2, rates=(1, 3))
  v = aspp.init(jax.random.key(1), x)
  got = aspp.apply(v, x)
  ref = 0.0
  for i, r in enumerate((1, 3)):
    k = np.asarray(v["params"][f"conv{i}"]["kernel"])  # (3, 3, 3, 2) HWIO
    xp = np.pad(np.asarray(x[0]), ((r, r), (r, r), (0, 0)))
    out = np.zeros((9, 11, 2))
    for a in range(3):
      for b in range(3):
        out += xp[a * r : a * r + 9, b * r : b * r + 11] @ k[a, b]
    ref = ref + out + np.asarray(v["params"][f"conv{i}"]["bias"])
  np.testing.assert_allclose(got[0], ref, rtol=1e-5, atol=1e-5)
  big = deeplab.ASPPv2(64).init(jax.random.key(2), jnp.zeros((1, 4, 4, 32)))
  kernel = np.asarray(big["params"]["conv0"]["kernel"])
  assert abs(kernel.std() - 0.01) < 0.001 and abs(kernel.mean()) < 0.001
  np.testing.assert_array_equal(big["params"]["conv0"]["bias"], 0.0)


def _paper_optimizer(steps=10):
  sched = optim.make_schedule({"name": "poly", "power": 0.9}, 2.5e-4, steps)
  cfg = {
    "name": "sgd",
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "weight_decay_mode": "l2",
    "lr_multipliers": (("^aspp", 10.0),),
  }
  return optim.make_optimizer(cfg, sched)


def test_frozen_bn_stays_frozen_through_a_train_step_and_head_gets_10x():
  model = get_model("deeplab_sid", backbone=TINY)
  x = jax.random.uniform(jax.random.key(3), (2, 33, 47, 3))
  variables = model.init(jax.random.key(0), x)
  # Non-trivial "pretrained" statistics, as converted weights would bring.
  stats = jax.tree.map(
    lambda a: jax.random.uniform(jax.random.key(a.size), a.shape, minval=0.5, maxval=1.5),
    variables["batch_stats"],
  )
  tx = _paper_optimizer()
  state = create_state(variables["params"], stats, tx.init(variables["params"]), jax.random.key(9))
  loss_fn = losses.build_loss("002_sid", max_depth=80.0)
  depth = jax.random.uniform(jax.random.key(4), (2, 33, 47), minval=0.5, maxval=90.0)
  batch = {"image": x, "depth": depth, "mask": jnp.ones((2,), bool)}
  # Eager (op-by-op): on a shared CPU compiling the whole step costs more than running it.
  step = step_lib.make_train_step(model, loss_fn, tx)
  new, metrics = step(state, batch)
  assert bool(metrics["finite"]) and float(metrics["loss"]) > 0
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(new.batch_stats), strict=True):
    np.testing.assert_array_equal(a, b)
  # First SGD step (zero momentum trace): update = -lr * mult * (grad + wd * w); lr = 2.5e-4 at count 0.
  grads = jax.grad(
    lambda p: loss_fn(model.apply({"params": p, "batch_stats": stats}, x), batch)[0]
  )(state.params)
  for path, w0 in jax.tree_util.tree_leaves_with_path(state.params):
    keys = [k.key for k in path]
    w1 = _get(new.params, keys)
    g = _get(grads, keys)
    mult = 10.0 if keys[0].startswith("aspp") else 1.0
    expected = -2.5e-4 * mult * (g + 5e-4 * w0)
    # float32 w1 - w0 loses the bits below w0's precision (|w0| * 2^-23).
    atol = 2.0 * np.abs(w0).max() * 2.0**-23
    np.testing.assert_allclose(w1 - w0, expected, rtol=1e-3, atol=atol, err_msg="/".join(keys))
  # Frozen BN ignores train=True: same outputs in both modes.
  v = {"params": state.params, "batch_stats": stats}
  np.testing.assert_allclose(
    model.apply(v, x, train=True)["depth_logits"], model.apply(v, x)["depth_logits"], rtol=1e-6
  )


def _get(tree, keys):
  for k in keys:
    tree = tree[k]
  return np.asarray(tree)


# ------------------------------------------------------------------------------------------------------
# Bins: encode -> decode through the model's decode (the contract's one conversion to metres).


def _one_hot_logits(idx, k=71):
  return 50.0 * jax.nn.one_hot(jnp.asarray(idx), k)[:, None, None, :]


def test_sid_round_trip_within_half_a_bin_in_log_space():
  rng = np.random.default_rng(0)
  y = np.exp(rng.uniform(0.0, math.log(80.0), 2000)).astype(np.float32)
  bins = db.make_bins(*deeplab.SID_BINS)
  idx = db.encode(bins, y)
  width = math.log(80.0) / 71  # one SID bin in natural-log units
  centre = get_model("deeplab_sid", bin_value_mode="log_centre")
  back = np.asarray(centre.decode({"depth_logits": _one_hot_logits(idx)})["depth"])[:, 0, 0]
  err = np.abs(np.log(back) - np.log(y))
  assert err.max() <= width / 2 + 1e-5
  # DORN's mid-point (the default) is the arithmetic mean of the edges: at most log((1 + e^w) / 2) above
  # the lower edge, slightly more than half a bin.
  mid = np.asarray(get_model("deeplab_sid").decode({"depth_logits": _one_hot_logits(idx)})["depth"])
  err = np.abs(np.log(mid[:, 0, 0]) - np.log(y))
  assert err.max() <= math.log((1 + math.exp(width)) / 2) + 1e-5
  assert width / 2 < math.log((1 + math.exp(width)) / 2) < 0.51 * width


def test_decode_modes_hand_values_at_bin_edges():
  # t_c = 80 ** (c / 71): t_1 = 1.0636631, t_35 = 8.6724729, t_36 = 9.2245892, t_70 = 75.2117862.
  t1, t35, t36, t70 = 1.0636631, 8.6724729, 9.2245892, 75.2117862
  y = np.asarray(
    [1.0 * 1.0001, t1 * 0.9999, t1 * 1.0001, t36 * 0.9999, t70 * 1.0001, 80.0], np.float32
  )
  idx = np.asarray(db.encode(db.make_bins(*deeplab.SID_BINS), y))
  np.testing.assert_array_equal(idx, [0, 0, 1, 35, 70, 70])
  logits = _one_hot_logits([0, 35, 70])
  expected = {
    "midpoint": [(1 + t1) / 2, (t35 + t36) / 2, (t70 + 80) / 2],
    "log_centre": [math.sqrt(t1), math.sqrt(t35 * t36), math.sqrt(t70 * 80)],
    "lower_edge": [1.0, t35, t70],
  }
  for mode, values in expected.items():
    got = get_model("deeplab_sid", bin_value_mode=mode).decode({"depth_logits": logits})["depth"]
    np.testing.assert_allclose(np.asarray(got)[:, 0, 0], values, rtol=1e-6, err_msg=mode)
  # The default (midpoint) is the 'dorn' kind's default class value: with alpha = 1 its edges are SID's.
  np.testing.assert_allclose(
    db.make_bins("dorn", 1.0, 80.0, 71).centres[[0, 35, 70]], expected["midpoint"], rtol=1e-6
  )
  # Soft expectation: half on class 0, half on class 1 -> mean of their mid-points.
  t2 = 80 ** (2 / 71)
  soft = jnp.log(jnp.asarray([0.5, 0.5] + [1e-12] * 69))[None, None, None]
  got = get_model("deeplab_sid", bin_decode="expectation").decode({"depth_logits": soft})["depth"]
  np.testing.assert_allclose(float(got[0, 0, 0]), 0.5 * ((1 + t1) / 2 + (t1 + t2) / 2), rtol=1e-5)


def test_regression_head_starts_at_the_prior_and_decodes_to_metres():
  x = jnp.zeros((1, 17, 23, 3))
  for units, raw in (("metres", 9.0), ("log", math.log(9.0))):
    m = get_model(
      "deeplab_regression", backbone=TINY, depth_output=units, depth_prior=9.0, aspp_init_std=0.0
    )
    out = m.apply(m.init(jax.random.key(0), x), x)
    assert set(out) == {"depth", "aux"} and out["depth"].shape == (1, 17, 23, 1)
    np.testing.assert_allclose(out["depth"], raw, rtol=1e-6)
    np.testing.assert_allclose(m.decode(out)["depth"], 9.0, rtol=1e-5)


def test_preprocessing_and_backbone_switches():
  x = jax.random.uniform(jax.random.key(0), (1, 17, 23, 3))
  m = get_model("deeplab_sid", backbone=TINY)
  v = m.init(jax.random.key(0), x)
  a = m.apply(v, x)["depth_logits"]
  b = get_model("deeplab_sid", backbone=TINY, preprocessing="imagenet").apply(v, x)["depth_logits"]
  assert not np.allclose(a, b)  # Caffe BGR 0-255 mean subtraction vs ImageNet RGB mean / std
  trainable = get_model("deeplab_sid", backbone={**TINY, "bn": "torch"})
  tv = jax.eval_shape(trainable.init, jax.random.key(0), x)
  assert "bn1" in tv["params"]["backbone"] and "mean" in tv["batch_stats"]["backbone"]["bn1"]


@pytest.mark.parametrize(
  "overrides,match",
  [
    ({"heads": ()}, "heads must be a non-empty subset"),
    ({"heads": ("depth_bins", "normals")}, "heads must be a non-empty subset"),
    ({"heads": ("depth",)}, "depth_output='bins' needs the 'depth_bins' head"),
    ({"depth_output": "metres"}, "decoded with depth_output='bins'"),
    ({"heads": ("depth_bins", "seg"), "num_classes": 0}, "num_classes >= 1"),
    ({"bin_decode": "average"}, "needs the 'depth' head"),
    ({"preprocessing": "bgr"}, "preprocessing must be"),
    ({"backbone": {"name": "resnet9000"}}, "unknown backbone 'resnet9000'"),
    ({"backbone": {"depths": (1, 1, 1, 1)}}, "needs a 'name'"),
    ({"depth_bins": None}, "depth_bins"),
  ],
)
def test_bad_configuration_errors_name_the_problem(overrides, match):
  m = get_model("deeplab_sid", **{"backbone": TINY, **overrides})
  with pytest.raises((ValueError, KeyError), match=match):
    m.init(jax.random.key(0), jnp.zeros((1, 17, 23, 3)))


def test_registry_names_and_outputs():
  x = jnp.zeros((1, 17, 23, 3))
  expect = {
    "deeplab_v2": {"seg_logits"},
    "deeplab_sid": {"depth_logits"},
    "deeplab_regression": {"depth"},
  }
  for name, keys in expect.items():
    m = get_model(name, backbone=TINY, num_classes=3)
    out = m.apply(m.init(jax.random.key(0), x), x)
    assert set(out) == keys | {"aux"}, name
    assert set(out) <= set(m.OUTPUTS) | {"aux"}
  # Segmentation-only model: decode gives class probabilities and no depth.
  seg = get_model("deeplab_v2", backbone=TINY, num_classes=3)
  dec = seg.decode(seg.apply(seg.init(jax.random.key(0), x), x))
  assert set(dec) == {"seg_probs"}
  np.testing.assert_allclose(dec["seg_probs"].sum(-1), 1.0, rtol=1e-5)


def test_converted_backbone_loads_through_model_init(tmp_path):
  # Converted torchvision weights carry trainable BatchNorm (scale / bias in params); config.model_init with
  # prefix 'backbone' puts them, with the running statistics, into the frozen BatchNorm's batch_stats.
  from ml_collections import ConfigDict

  from semdepth_jax.models import backbones
  from semdepth_jax.train import loop
  from semdepth_jax.weights import convert

  attrs = {k: v for k, v in TINY.items() if k != "name"}
  source = backbones.get_backbone_entry("resnet101_deeplab").build(
    **attrs, bn=deeplab.layers.TORCH_BN
  )
  x = jnp.zeros((1, 33, 47, 3))
  pretrained = jax.tree.map(
    lambda a: np.asarray(
      jax.random.uniform(jax.random.key(a.size), a.shape, minval=0.5, maxval=1.5)
    ),
    source.init(jax.random.key(5), x),
  )
  convert.save_variables(pretrained, tmp_path / "w", architecture="resnet101_deeplab")
  model = get_model("deeplab_sid", backbone=TINY)
  fresh = jax.tree.map(np.asarray, model.init(jax.random.key(0), x))
  init = ConfigDict({"path": str(tmp_path / "w"), "prefix": "backbone", "exclude": ()})
  merged = loop.load_model_init(init, fresh)
  np.testing.assert_array_equal(
    merged["params"]["backbone"]["layer2"]["block0"]["conv1"]["kernel"],
    pretrained["params"]["layer2"]["block0"]["conv1"]["kernel"],
  )
  bn = merged["batch_stats"]["backbone"]["layer3"]["block0"]["bn2"]
  for key, collection in (("scale", "params"), ("bias", "params"), ("mean", "batch_stats")):
    np.testing.assert_array_equal(bn[key], pretrained[collection]["layer3"]["block0"]["bn2"][key])
  # The ASPP head keeps its own initialisation.
  np.testing.assert_array_equal(
    merged["params"]["aspp_bins"]["conv0"]["kernel"],
    fresh["params"]["aspp_bins"]["conv0"]["kernel"],
  )


def test_sid_loss_ignores_missing_and_far_depth():
  # 10 m -> class floor(71 ln 10 / ln 80) = floor(37.31) = 37; 0 (no LiDAR) and 85 m (> 80 m) are ignored.
  logits = np.asarray(jax.random.normal(jax.random.key(0), (1, 1, 3, 71)))
  batch = {"depth": jnp.asarray([[[10.0, 0.0, 85.0]]]), "mask": jnp.ones((1,), bool)}
  loss, _ = losses.build_loss("002_sid", max_depth=80.0)(
    {"depth_logits": jnp.asarray(logits)}, batch
  )
  z = logits[0, 0, 0].astype(np.float64)
  expected = -(z[37] - z.max() - np.log(np.exp(z - z.max()).sum()))
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  none = {"depth": jnp.asarray([[[0.0, 85.0, 80.5]]]), "mask": jnp.ones((1,), bool)}
  assert float(losses.build_loss("002_sid")({"depth_logits": jnp.asarray(logits)}, none)[0]) == 0.0
