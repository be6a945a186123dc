"""Paper 001 models (DeepLab-ASPP VGG16, DepthNet, HybridNet A1 / A2): sizes, parameter counts, stages.

Parameter counts are derived here layer by layer from the tables of docs/model_spec.md §2.1-§2.4 (a 3x3
conv from C_in to C_out has 9 C_in C_out weights + C_out biases, and so on), never read from the code.
Numerical parity of the blocks with PyTorch is in tests/parity/test_hybridnet_parity.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.models import backbones, get_model, hybridnet
from semdepth_jax.models.backbones import vgg


def conv(k, cin, cout):
  return k * k * cin * cout + cout


def dense(n_in, n_out):
  return n_in * n_out + n_out


# §2.1: VGG16 conv1_1..conv5_3 (3x3, widths 64-128-256-512-512).
VGG16 = (
  conv(3, 3, 64) + conv(3, 64, 64)
  + conv(3, 64, 128) + conv(3, 128, 128)
  + conv(3, 128, 256) + 2 * conv(3, 256, 256)
  + conv(3, 256, 512) + 2 * conv(3, 512, 512)
  + 3 * conv(3, 512, 512)
)  # fmt: skip


def aspp(c):
  """§2.1: four branches fc6 (3x3 512 -> 1024), fc7 (1x1 1024 -> 1024), fc8 (1x1 1024 -> C)."""
  return 4 * (conv(3, 512, 1024) + conv(1, 1024, 1024) + conv(1, 1024, c))


# §2.2 recommended reconstruction: AlexNet trunk 96-256-384-384-256, kernels 11/5/3/3/3.
TRUNK = (
  conv(11, 3, 96) + conv(5, 96, 256) + conv(3, 256, 384) + conv(3, 384, 384) + conv(3, 384, 256)
)
GLOBAL = TRUNK + dense(41 * 41 * 256, 1024) + dense(1024, 1681)
GRADIENT = TRUNK + conv(3, 256, 2)


def refine(coarse_channels):
  """§2.2: conv1 9x9 (3 -> 96), then 5x5 convs 64, 64, 64 and 64 -> 1 on [conv1, coarse maps]."""
  return conv(9, 3, 96) + conv(5, 96 + coarse_channels, 64) + 2 * conv(5, 64, 64) + conv(5, 64, 1)


def n_params(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_init(model, size=(321, 321)):
  x = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)


def abstract_apply(model, variables, size=(321, 321), train=True, **kwargs):
  x = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
  rngs = {"dropout": jax.random.key(1)}
  return jax.eval_shape(
    lambda v, x: model.apply(v, x, train=train, rngs=rngs, **kwargs), variables, x
  )


@pytest.mark.parametrize("classes", [21, 19])
def test_deeplab_aspp_parameter_count(classes):
  params = abstract_init(get_model("deeplab_vgg", num_classes=classes))["params"]
  assert n_params(params["backbone"]) == VGG16 == 14_714_688
  assert n_params(params["aspp"]) == aspp(classes)
  assert n_params(params) == VGG16 + aspp(classes)


def test_depthnet_parameter_counts_per_part():
  params = abstract_init(get_model("depthnet"))["params"]
  assert n_params(params["global_net"]) == GLOBAL
  assert n_params(params["global_net"]["fc6"]) == 440_665_088  # the ~441 M FC of model_spec §2.2
  assert n_params(params["gradient_net"]) == GRADIENT
  assert n_params(params["refine_net"]) == refine(1 + 2)  # global depth + two gradient maps
  assert n_params(params) == GLOBAL + GRADIENT + refine(3)


def test_depthnet_reduced_fc_option():
  """``fc_grid=(6, 6)``: the trunk output is pooled to 6 x 6 before FC 1024 (AlexNet's pool5 size)."""
  model = get_model("depthnet", global_net={"fc_grid": (6, 6)})
  params = abstract_init(model)["params"]
  assert n_params(params["global_net"]) == TRUNK + dense(6 * 6 * 256, 1024) + dense(1024, 1681)
  out = abstract_apply(model, {"params": params})
  assert out["aux"]["global_depth"].shape == (1, 41, 41, 1)


@pytest.mark.parametrize(
  "name,expected",
  [
    ("hybridnet_a1", VGG16 + aspp(19) + refine(512)),
    ("hybridnet_a2", VGG16 + aspp(19) + GLOBAL + refine(1 + 512)),
  ],
)
def test_hybridnet_parameter_counts(name, expected):
  params = abstract_init(get_model(name, num_classes=19))["params"]
  assert n_params(params) == expected
  assert n_params(params["backbone"]) == VGG16
  assert n_params(params["aspp"]) == aspp(19)
  assert ("global_net" in params) == (name == "hybridnet_a2")


def test_feature_projection_adds_a_1x1_conv():
  params = abstract_init(get_model("hybridnet_a1", num_classes=19, feature_projection=32))["params"]
  assert n_params(params["project"]) == conv(1, 512, 32)
  assert n_params(params["refine_net"]) == refine(32)


@pytest.mark.parametrize("size", [(321, 321), (320, 320)])
@pytest.mark.parametrize("name", ["deeplab_vgg", "depthnet", "hybridnet_a1", "hybridnet_a2"])
def test_output_sizes_at_paper_inputs(name, size):
  """41 x 41 scores / global depth and 81 x 81 refined depth for 321 tiles and 320 crops (§2.1-§2.4)."""
  model = get_model(name)
  variables = abstract_init(model, size)
  out = abstract_apply(model, variables, size)
  if "seg_logits" in model.OUTPUTS:
    assert out["seg_logits"].shape == (1, 41, 41, model.num_classes)
  if "depth" in model.OUTPUTS:
    assert out["depth"].shape == (1, 81, 81, 1)
  if name in ("depthnet", "hybridnet_a2"):
    assert out["aux"]["global_depth"].shape == (1, 41, 41, 1)
  if name == "depthnet":
    assert out["aux"]["gradients"].shape == (1, 41, 41, 2)
  # Test time: Caffe Interp to the input size (upsample_outputs), or the raw grids without it.
  test = abstract_apply(model, variables, size, train=False)
  raw = abstract_apply(model.clone(upsample_outputs=False), variables, size, train=False)
  for key in ("seg_logits", "depth"):
    if key in out:
      assert test[key].shape[1:3] == size
      assert raw[key].shape == out[key].shape


# Odd inputs, worked by hand. Caffe 3x3 / 2 pad-1 pools in ceil mode: out = ceil((n - 1) / 2) + 1
# (floor mode would give floor((n - 1) / 2) + 1). 35: VGG 35 -> 18 -> 10 -> 6 (floor mode: 18 -> 9 -> 5);
# 53: 53 -> 27 -> 14 -> 8 (floor: 27 -> 13 -> 7). DepthNet conv1 11x11 / 2 pad 5: floor((n - 1) / 2) + 1
# = 18 / 27, pool1 -> 10 / 14, pool5 -> 6 / 8. Refining conv1 9x9 / 2 pad 4 -> 18 / 27, pool -> 10 / 14.
ODD = {(35, 53): ((6, 8), (10, 14)), (33, 49): ((5, 7), (9, 13)), (37, 29): ((6, 5), (10, 8))}
# 33 = 8 * 4 + 1: 33 -> 17 -> 9 -> 5, refine 17 -> 9 (= 2 * 5 - 1, the Interp x2 relation of 321 / 41 / 81).
# 37: 19 -> 10 -> 6, refine 19 -> 10. 29: 15 -> 8 -> 5, refine 15 -> 8.


@pytest.mark.parametrize("size", sorted(ODD))
def test_ceil_mode_sizes_on_odd_inputs(size):
  s8, s4 = ODD[size]
  tiny = {
    "backbone": {"widths": ((2, 2), (2, 2), (3, 3, 3), (4, 4, 4), (4, 4, 4))},
    "aspp": {"width": 4},
    "global_net": {"widths": (2, 3, 3, 3, 2), "fc_hidden": 4},
    "refine": {"conv1_width": 2, "widths": (2, 2, 2)},
  }
  a2 = get_model("hybridnet_a2", num_classes=3, **tiny)
  out = abstract_apply(a2, abstract_init(a2, size), size)
  assert out["seg_logits"].shape == (1, *s8, 3)
  assert out["aux"]["global_depth"].shape == (1, *s8, 1)
  assert out["depth"].shape == (1, *s4, 1)
  dn = get_model(
    "depthnet",
    global_net=tiny["global_net"],
    gradient_net={"widths": (2, 3, 3, 3, 2)},
    refine=tiny["refine"],
  )
  out = abstract_apply(dn, abstract_init(dn, size), size)
  assert out["aux"]["gradients"].shape == (1, *s8, 2)
  assert out["depth"].shape == (1, *s4, 1)


# ----------------------------------------------------------------------------------------------------
# Behaviour at tiny widths.
# ----------------------------------------------------------------------------------------------------
TINY_VGG = ((2, 2), (3, 3), (4, 4, 4), (5, 5, 5), (6, 6, 6))
TINY_TRUNK = {"widths": (3, 4, 4, 4, 3), "fc_hidden": 5}
TINY_REFINE = {"conv1_width": 3, "widths": (4, 4, 4)}
SIZE = (33, 41)


def _tiny(name, **kw):
  base = {"num_classes": 4} if name != "depthnet" else {}
  if name != "depthnet":
    base.update(backbone={"widths": TINY_VGG}, aspp={"width": 6, "rates": (1, 2, 3, 4)})
  if name in ("depthnet", "hybridnet_a2"):
    base["global_net"] = TINY_TRUNK
  if name == "depthnet":
    base["gradient_net"] = {"widths": TINY_TRUNK["widths"]}
  if name != "deeplab_vgg":
    base["refine"] = TINY_REFINE
  base.update(kw)
  return get_model(name, **base)


def key(seed):
  # XLA's RngBitGenerator compiles much faster than threefry on CPU (tests/models/test_layers.py).
  return jax.random.key(seed, impl="unsafe_rbg")


def _image(seed=0, size=SIZE):
  return jnp.asarray(np.random.default_rng(seed).uniform(0, 1, (2, *size, 3)).astype(np.float32))


def _grad_norms(model, variables, x, output="depth"):
  """Gradient norm per top-level subtree of sum(output^2) (eager: cheaper than compiling here)."""

  def loss(params):
    out = model.apply({"params": params}, x, train=True, rngs={"dropout": key(3)})
    node = out[output] if output in out else out["aux"][output]
    return jnp.sum(node**2)

  grads = jax.grad(loss)(variables["params"])
  return {
    k: float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(v)))) for k, v in grads.items()
  }


def _perturbed(variables, keep):
  """Every top-level subtree except ``keep`` shifted by 1, so a net that reads them changes."""
  return {
    "params": {
      k: v if k == keep else jax.tree.map(lambda a: a + 1.0, v)
      for k, v in variables["params"].items()
    }
  }


def test_depthnet_stages_train_one_part_each():
  x = _image()
  model = _tiny("depthnet")
  variables = model.init(key(0), x)
  assert set(variables["params"]) == {"global_net", "gradient_net", "refine_net"}
  # 'global' / 'gradient' run their own part only: the other parts do not change the output.
  for stage, part, output in (
    ("global", "global_net", "depth"),
    ("gradient", "gradient_net", None),
  ):
    m = model.clone(stage=stage)
    a = m.apply(variables, x)
    b = m.apply(_perturbed(variables, part), x)
    if output is None:
      assert set(a) == {"aux"} and a["aux"]["gradients"].shape == (2, 5, 6, 2)
      np.testing.assert_array_equal(a["aux"]["gradients"], b["aux"]["gradients"])
    else:
      assert a["depth"].shape[1:3] == SIZE  # test-time Interp of the 5 x 6 global depth
      np.testing.assert_array_equal(a["depth"], b["depth"])
  # 'refine': the global and gradient nets are frozen, deterministic inputs (stop_gradient, no dropout).
  refine = model.clone(stage="refine")
  g = _grad_norms(refine, variables, x)
  assert g["refine_net"] > 0 and g["global_net"] == 0 and g["gradient_net"] == 0
  a, b = (
    refine.apply(variables, x, train=True, rngs={"dropout": key(s)})["aux"]["global_depth"]
    for s in (1, 2)
  )
  np.testing.assert_array_equal(a, b)
  # 'full' (evaluation / joint fine-tuning): everything is trained.
  assert min(_grad_norms(model, variables, x).values()) > 0


def test_hybridnet_a2_global_stage_and_shared_subtrees():
  x = _image()
  a2 = _tiny("hybridnet_a2")
  variables = a2.init(key(0), x)
  glob = a2.clone(stage="global", upsample_outputs=False)
  out = glob.apply(variables, x)
  assert set(out) == {"depth", "aux"} and out["depth"].shape == (2, 5, 6, 1)
  np.testing.assert_array_equal(
    out["depth"], glob.apply(_perturbed(variables, "global_net"), x)["depth"]
  )
  # full: the depth loss reaches the shared VGG and the global net; the ASPP only serves segmentation.
  g = _grad_norms(a2, variables, x)
  assert g["backbone"] > 0 and g["global_net"] > 0 and g["refine_net"] > 0 and g["aspp"] == 0
  # DeepLab's backbone / ASPP and DepthNet's global net have the same trees: they initialise A2's.
  deeplab = abstract_init(_tiny("deeplab_vgg"), SIZE)["params"]
  depthnet = abstract_init(_tiny("depthnet"), SIZE)["params"]
  for sub, src in (("backbone", deeplab), ("aspp", deeplab), ("global_net", depthnet)):
    assert jax.tree.map(jnp.shape, src[sub]) == jax.tree.map(jnp.shape, variables["params"][sub])
  with pytest.raises(ValueError, match="no global net"):
    abstract_init(_tiny("hybridnet_a1", stage="global"), SIZE)


def test_deeplab_is_vgg_plus_aspp_on_caffe_normalised_input():
  """The model = VGG (deeplab_v2) on BGR, 0-255, mean-subtracted input, then four summed branches."""
  x = _image(1)
  model = _tiny("deeplab_vgg", upsample_outputs=False)
  variables = model.init(key(0), x)
  got = model.apply(variables, x)["seg_logits"]
  bgr = np.asarray(x)[..., ::-1] * 255.0 - np.array([104.008, 116.669, 122.675], np.float32)
  feats = vgg.VGG(widths=TINY_VGG, num_classes=0, variant="deeplab_v2").apply(
    {"params": variables["params"]["backbone"]}, jnp.asarray(bgr)
  )["features"]["stride32"]
  head = {"params": variables["params"]["aspp"]}
  total = 0.0
  for i, r in enumerate((1, 2, 3, 4), start=1):
    one = hybridnet.ASPPVGG(num_classes=4, width=6, rates=(r,))
    p = {k.replace(f"_{i}", "_1"): v for k, v in head["params"].items() if k.endswith(f"_{i}")}
    total = total + one.apply({"params": p}, feats)
  np.testing.assert_allclose(got, total, rtol=1e-4, atol=1e-4)
  imagenet = model.clone(preprocessing="imagenet").apply(variables, x)["seg_logits"]
  assert not np.allclose(imagenet, got)
  assert backbones.CAFFE_BGR.mean == (104.008, 116.669, 122.675)


def test_test_time_interp_matches_align_corners_resize_of_training_grid():
  x = _image(2)
  model = _tiny("hybridnet_a1")
  variables = model.init(key(0), x)
  raw = model.clone(upsample_outputs=False).apply(variables, x)
  up = model.apply(variables, x)
  for name in ("depth", "seg_logits"):
    r = np.asarray(raw[name])
    # Rows and columns at the aligned positions i * (H - 1) / (h - 1) that are integers equal the raw grid.
    h, H = r.shape[1], SIZE[0]
    assert (H - 1) % (h - 1) == 0  # 33 -> 5 (stride 8): rows 0, 8, ..., 32
    step = (H - 1) // (h - 1)
    cols = [j for j in range(r.shape[2]) if (j * (SIZE[1] - 1)) % (r.shape[2] - 1) == 0]
    for j in cols:
      jj = j * (SIZE[1] - 1) // (r.shape[2] - 1)
      np.testing.assert_allclose(
        np.asarray(up[name])[:, ::step, jj], r[:, :, j], rtol=1e-5, atol=1e-5
      )


def test_log_depth_head_and_prior():
  x = _image(3)
  model = _tiny(
    "hybridnet_a1",
    depth_output="log",
    depth_prior=5.0,
    upsample_outputs=False,
    preprocessing="imagenet",
  )
  variables = model.init(key(0), x)
  log_d = model.apply(variables, x)["depth"]
  linear = model.clone(depth_output="metres", depth_prior=None).apply(variables, x)["depth"]
  np.testing.assert_allclose(log_d, linear + np.log(5.0), rtol=1e-5, atol=1e-5)
  decoded = model.decode(model.apply(variables, x))["depth"]
  # contract.py: metres = exp(clip(log, -9, 9)).
  np.testing.assert_allclose(decoded, np.exp(np.clip(np.asarray(log_d)[..., 0], -9, 9)), rtol=1e-5)


def test_paper_rng_init_std():
  x = _image()
  model = _tiny("hybridnet_a1", init_std=0.1, refine={**TINY_REFINE})
  p = model.init(key(0), x)["params"]["refine_net"]
  k = np.concatenate([np.ravel(p[n]["kernel"]) for n in p])
  assert abs(float(np.std(k)) - 0.1) < 0.01
  he = _tiny("hybridnet_a1").init(key(0), x)["params"]["refine_net"]["conv2"]["kernel"]
  fan_in = 5 * 5 * (3 + 6)
  assert abs(float(np.std(he)) - np.sqrt(2 / fan_in)) < 0.3 * np.sqrt(2 / fan_in)


def test_errors_name_the_model_and_key():
  def init(model, size=SIZE, channels=3):
    x = jax.ShapeDtypeStruct((1, *size, channels), jnp.float32)
    return jax.eval_shape(lambda x: model.init(key(0), x), x)

  with pytest.raises(ValueError, match=r"hybridnet_a2: refine: unknown key\(s\) \['conv_width'\]"):
    init(_tiny("hybridnet_a2", refine={"conv_width": 3}))
  with pytest.raises(ValueError, match="backbone must not set"):
    init(_tiny("deeplab_vgg", backbone={"widths": TINY_VGG, "variant": "torchvision"}))
  with pytest.raises(ValueError, match="stage must be one of"):
    init(_tiny("depthnet", stage="coarse"))
  with pytest.raises(ValueError, match="preprocessing must be one of"):
    init(_tiny("depthnet", preprocessing="bgr"))
  with pytest.raises(ValueError, match=r"image must be \(B, H, W, 3\)"):
    init(_tiny("depthnet"), channels=2)
  with pytest.raises(ValueError, match="need 5 entries"):
    init(_tiny("depthnet", global_net={"widths": (2, 2)}))


def test_models_are_hashable_with_nested_configs():
  """Nested sub-configs are frozen (FrozenDict / tuples), so modules hash and compare by value."""
  a = get_model("hybridnet_a2", refine={"widths": [4, 4, 4]}, global_net={"fc_grid": [2, 2]})
  b = get_model("hybridnet_a2", refine={"widths": (4, 4, 4)}, global_net={"fc_grid": (2, 2)})
  assert hash(a) == hash(b) and a == b
  assert a.refine["widths"] == (4, 4, 4)


def test_paper_tiling_protocol_by_hand():
  """model_spec §2.6 on a 40 x 70 image with 33 x 33 tiles: rows start at 0, 7; columns at 0, 19, 37.

  Every tile runs the model at its input size (the Interp'd test-time outputs); depth is the mean over the
  tiles covering a pixel, class scores the per-class maximum (the label with the higher normalised score).
  """
  from configs import hybridnet as presets
  from semdepth_jax import predict, tiling

  model = _tiny("hybridnet_a1")
  tile = (33, 33)
  variables = model.init(key(0), _image(size=tile))
  image = np.random.default_rng(9).uniform(0, 1, (1, 40, 70, 3)).astype(np.float32)
  assert tiling.tile_grid(40, 70, tile) == ((0, 7), (0, 19, 37))
  depth_sum = np.zeros((1, 40, 70))
  count = np.zeros((1, 40, 70))
  best = np.zeros((1, 40, 70, 4))
  for r in (0, 7):
    for c in (0, 19, 37):
      out = model.apply(variables, jnp.asarray(image[:, r : r + 33, c : c + 33]))
      depth_sum[:, r : r + 33, c : c + 33] += np.asarray(out["depth"])[..., 0]
      count[:, r : r + 33, c : c + 33] += 1
      probs = np.asarray(jax.nn.softmax(out["seg_logits"], axis=-1))
      best[:, r : r + 33, c : c + 33] = np.maximum(best[:, r : r + 33, c : c + 33], probs)
  settings = presets.paper_eval_settings("cityscapes")
  assert (settings.mode, settings.tile_size, settings.tile_combine) == ("tile", (321, 321), "max")
  inference = predict.InferenceModel(
    model, input_size=tile, mode="tile", tile_size=tile, tile_combine=settings.tile_combine
  )
  got = jax.jit(inference.dense)(variables, jnp.asarray(image))
  np.testing.assert_allclose(got["depth"], depth_sum / count, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(got["probs"], best, rtol=1e-4, atol=1e-5)
