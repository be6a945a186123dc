"""EfficientNet-B0 / B4 against timm ``efficientnet_bN`` with the same (random) weights.

The reference models are timm's own (``timm.create_model``) with every BatchNorm's statistics and affine
parameters randomised; their state dict goes through :func:`key_table` + ``apply_key_table`` into our
variables. Features come from timm's ``features_only=True`` model loaded with the same weights (strict),
logits from the classifier model. The smp output-stride rule is applied to the timm model here, by hand,
from smp's ``EncoderMixin.make_dilated`` / ``replace_strides_with_dilation``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.models.backbones import BACKBONES, IMAGENET
from semdepth_jax.models.backbones import efficientnet as effnet
from semdepth_jax.weights.keymap import apply_key_table
from tests.parity.conftest import require

TOL = 1e-4
HEAD = ("conv_head.", "bn2.", "classifier.")  # timm head modules (not in features_only models)


def _timm(torch, variant, **kwargs):
  timm = require("timm")
  return timm.create_model(f"efficientnet_{variant}", **kwargs)


def _smp_dilate(torch, model, output_stride):
  """smp ``make_dilated`` on timm's EfficientNet blocks (smp stage_idxs (2, 3, 5)).

  The stride-16 level is ``blocks[3:5]``, the stride-32 level ``blocks[5:]``; every Conv2d of a level whose
  stride exceeds ``output_stride`` gets stride 1, dilation ``level // output_stride`` and padding
  ``(k // 2) * dilation`` (smp ``replace_strides_with_dilation``).
  """
  for level, modules in ((16, model.blocks[3:5]), (32, model.blocks[5:])):
    if level <= output_stride:
      continue
    d = level // output_stride
    for conv in modules.modules():
      if isinstance(conv, torch.nn.Conv2d):
        kh, kw = conv.kernel_size
        conv.stride = (1, 1)
        conv.dilation = (d, d)
        conv.padding = ((kh // 2) * d, (kw // 2) * d)
  return model


def _randomise_bn(torch, model, size, seed):
  """Random BN affine parameters and running statistics (fresh ones would be (1, 0, 0, 1)).

  Scales are drawn from U(0.2, 0.5), biases from 0.2 N(0, 1); the running statistics are then the batch
  statistics of a random (2, 3, size, size) input (not the test input). Why: a random EfficientNet with
  arbitrary statistics, or with scales near 1, is chaotic: activations reach O(1e2-1e5) by stride 32 and
  float32 rounding alone (timm in float32 against timm in float64) exceeds 1e-4 there (measured 9e-4 for
  B4 at 321x321 with scales U(0.5, 1.5)). With these choices activations stay O(5) and timm's own
  float32 rounding error stays near 1e-5, so the 1e-4 tolerance tests the implementation. (In float64 our
  model equals timm's to ~1e-11.)
  """
  g = torch.Generator().manual_seed(seed)
  bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for m in bns:
      m.weight.copy_(0.2 + 0.3 * torch.rand(m.num_features, generator=g))
      m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
      m.momentum = 1.0  # running statistics := this batch's statistics
    model.train()
    model(torch.randn(2, 3, size, size, generator=g))
    for m in bns:
      m.momentum = 0.1


def _reference(torch, variant, size, seed, smp_output_stride=None, **kwargs):
  """timm classifier model with random weights (BN calibrated at ``size``), in eval mode; state dict."""
  torch.manual_seed(seed)
  model = _timm(torch, variant, **kwargs)
  if smp_output_stride:
    _smp_dilate(torch, model, smp_output_stride)
  _randomise_bn(torch, model, size, seed)
  return model.eval(), model.state_dict()


def _features_model(torch, variant, state, smp_output_stride=None, **kwargs):
  """timm ``features_only`` model holding ``state`` (the head entries dropped; strict load)."""
  feats = _timm(torch, variant, features_only=True, **kwargs)
  feats.load_state_dict({k: v for k, v in state.items() if not k.startswith(HEAD)}, strict=True)
  if smp_output_stride:
    _smp_dilate(torch, feats, smp_output_stride)
  return feats.eval()


def _ours(model, state, x, **table_kwargs):
  target = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *x.shape[1:]), jnp.float32))
  unused = HEAD if model.num_classes == 0 else ()
  variables = apply_key_table(state, effnet.key_table(**table_kwargs), target, allow_unused=unused)
  return jax.jit(model.apply)(variables, jnp.asarray(x))


def _count(model):
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"]))


def _input(torch, shape, seed):
  x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
  return x, torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def _compare_features(ours, ref_feats, info):
  assert {n for n, *_ in info} == set(ours["features"])
  for (name, _, _, channels), ref in zip(info, ref_feats, strict=True):
    ref = ref.detach().numpy().transpose(0, 2, 3, 1)
    got = np.asarray(ours["features"][name])
    assert got.shape == ref.shape and got.shape[-1] == channels, (name, got.shape, ref.shape)
    err = np.max(np.abs(got - ref))
    assert err <= TOL, f"{name}: max abs diff {err:.3g} (scale {np.max(np.abs(ref)):.3g})"


@pytest.mark.parametrize(
  "variant,size,batch",
  [("b0", 224, 2), ("b0", 225, 1), ("b4", 224, 1), ("b4", 321, 1)],
)
def test_features_and_logits_match_timm(torch, variant, size, batch):
  x, xt = _input(torch, (batch, size, size, 3), seed=size)
  ref, state = _reference(torch, variant, size, seed=size)
  model = effnet.EfficientNet(variant=variant)
  out = _ours(model, state, x, variant=variant)
  with torch.no_grad():
    logits = ref(xt).numpy()
    feats = _features_model(torch, variant, state)(xt)
  _compare_features(out, feats, model.feature_info())
  err = np.max(np.abs(np.asarray(out["logits"]) - logits))
  assert err <= TOL, f"logits: max abs diff {err:.3g} (scale {np.max(np.abs(logits)):.3g})"


@pytest.mark.parametrize("variant", ["b0", "b1", "b2", "b3", "b4"])
def test_parameter_counts_and_feature_info_match_timm(torch, variant):
  ref = _timm(torch, variant)
  feats = _timm(torch, variant, features_only=True)
  for num_classes, torch_model in [(1000, ref), (0, feats)]:
    ours = _count(effnet.EfficientNet(variant=variant, num_classes=num_classes))
    assert ours == sum(p.numel() for p in torch_model.parameters()), num_classes
    if variant == "b4" and num_classes:
      assert ours == 19_341_616  # timm efficientnet_b4 (issue 10)
  info = effnet.EfficientNet(variant=variant).feature_info()
  assert [c for *_, c in info] == feats.feature_info.channels()
  assert [s for _, _, s, _ in info] == feats.feature_info.reduction()
  for os_ in (16, 8):
    dil = _timm(torch, variant, features_only=True, output_stride=os_)
    info = effnet.EfficientNet(variant=variant, output_stride=os_).feature_info()
    assert [s for _, _, s, _ in info] == dil.feature_info.reduction()
    assert [n for n, *_ in info] == ["stride2", "stride4", "stride8", "stride16", "stride32"]


@pytest.mark.parametrize(
  "variant,output_stride,rule,size",
  [("b0", 16, "timm", 97), ("b0", 8, "smp", 97), ("b4", 8, "timm", 129), ("b4", 8, "smp", 129)],
)
def test_dilated_encoder_matches(torch, variant, output_stride, rule, size):
  # The full (classifier) timm model is dilated too, so its state dict (head included) is loaded into our
  # num_classes=0 encoder with allow_unused=HEAD, the way a converted ImageNet checkpoint is used.
  if rule == "timm":
    kwargs = dict(output_stride=output_stride)
  else:
    kwargs = dict(smp_output_stride=output_stride)
  x, xt = _input(torch, (1, size, size, 3), seed=size)
  _, state = _reference(torch, variant, size, seed=output_stride, **kwargs)
  feats = _features_model(torch, variant, state, **kwargs)
  attrs = dict(variant=variant, num_classes=0, output_stride=output_stride, dilation_rule=rule)
  model = effnet.EfficientNet(**attrs)
  out = _ours(model, state, x, **attrs)
  with torch.no_grad():
    ref = feats(xt)
  assert ref[-1].shape[-1] == -(-size // output_stride)
  _compare_features(out, ref, model.feature_info())


@pytest.mark.parametrize("variant", ["b0", "b1", "b2", "b3", "b4"])
def test_preprocessing_matches_timm_pretrained_cfg(torch, variant):
  timm = require("timm")
  default = timm.models.get_pretrained_cfg(f"efficientnet_{variant}")
  assert effnet.DEFAULT_TAGS[variant] == default.tag
  names = [n for n in timm.list_pretrained(f"efficientnet_{variant}.*")]
  assert sorted(effnet.WEIGHT_TAGS[variant]) == sorted(n.split(".", 1)[1] for n in names)
  for name in names:
    cfg = timm.models.get_pretrained_cfg(name)
    prep = effnet.preprocessing(variant, name.split(".", 1)[1])
    assert prep.mean == tuple(cfg.mean) and prep.std == tuple(cfg.std), name
    assert prep.input_scale == 1.0 and prep.channel_order == "RGB"
  assert effnet.preprocessing(variant) == effnet.preprocessing(variant, default.tag)
  entry = BACKBONES[f"efficientnet_{variant}"]
  assert entry.preprocessing() == effnet.preprocessing(variant)
  assert entry.reference == f"timm.create_model('efficientnet_{variant}')"
  if variant == "b4":
    assert effnet.PREPROCESSING == IMAGENET == effnet.preprocessing("b4")
