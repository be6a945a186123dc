"""Unit tests for semdepth_jax.models.backbones.efficientnet at tiny widths (no torch needed).

Parity with timm itself is in tests/parity/test_timm_efficientnet.py; here expected values are worked out
by hand from the EfficientNet tables (Tan & Le 2019, Table 1) and the timm / smp rules quoted in each test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.models import layers
from semdepth_jax.models.backbones import BACKBONES, IMAGENET
from semdepth_jax.models.backbones import efficientnet as effnet
from semdepth_jax.weights.keymap import KeyTableError, apply_key_table, flatten

TINY = dict(width_multiplier=0.25, depth_multiplier=0.5, num_classes=5)
# Hand-computed for width 0.25: stem 32 -> 8; stage widths 16, 24, 40, 80, 112, 192, 320 ->
# 8, 8, 16 (10 rounds to 8, > 10 % under, so 16), 24, 32, 48, 80. Depth 0.5: repeats
# ceil(0.5 * (1, 2, 2, 3, 3, 4, 1)) = (1, 1, 1, 2, 2, 2, 1).
TINY_FEATURE_CHANNELS = [8, 8, 16, 32, 80]
TINY_REPEATS = (1, 1, 1, 2, 2, 2, 1)
KERNELS = (3, 3, 5, 3, 5, 5, 3)


def _key(seed):
  return jax.random.key(seed, impl="unsafe_rbg")


def _init(model, shape=(2, 37, 45, 3)):
  """Random variables shaped like ``model.init``'s and an input; numpy-filled, because running the
  initialisers compiles one XLA program per parameter shape (tens of seconds on a loaded CPU)."""
  x = jnp.asarray(np.random.default_rng(1).standard_normal(shape), jnp.float32)
  shapes = jax.eval_shape(model.init, _key(0), x)
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    if path[-1].key == "var":
      return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
    return jnp.asarray(0.3 * rng.standard_normal(leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes), x


def _ceil_chain(n, stride):
  """Spatial size after log2(stride) PyTorch stride-2 convs with k // 2 padding: ceil(n / 2) each."""
  for _ in range(int(math.log2(stride))):
    n = -(-n // 2)
  return n


def test_round_channels_and_repeats_by_hand():
  assert [effnet.round_channels(c, 1.4) for c in (32, 16, 24, 40, 80, 112, 192, 320, 1280)] == [
    48,
    24,
    32,
    56,
    112,
    160,
    272,
    448,
    1792,
  ]
  m = effnet.EfficientNet(**TINY)
  assert m.stem_channels() == 8
  assert m.stage_repeats() == TINY_REPEATS
  assert effnet.EfficientNet(variant="b4").stage_repeats() == (2, 4, 4, 6, 6, 8, 2)  # ceil(1.8 r)
  assert effnet.EfficientNet(variant="b1").stage_repeats() == (2, 3, 3, 4, 4, 5, 2)  # ceil(1.1 r)


@pytest.mark.parametrize(
  "output_stride,rule", [(32, "timm"), (16, "timm"), (8, "timm"), (16, "smp"), (8, "smp")]
)
def test_feature_info_matches_output_shapes_on_odd_sizes(output_stride, rule):
  model = effnet.EfficientNet(**TINY, output_stride=output_stride, dilation_rule=rule)
  variables, x = _init(model)
  out = model.apply(variables, x)
  info = model.feature_info()
  assert [n for n, *_ in info] == ["stride2", "stride4", "stride8", "stride16", "stride32"]
  assert [s for _, s, _, _ in info] == [2, 4, 8, 16, 32]
  assert [a for _, _, a, _ in info] == [min(s, output_stride) for s in (2, 4, 8, 16, 32)]
  assert [c for *_, c in info] == TINY_FEATURE_CHANNELS
  assert set(out["features"]) == {n for n, *_ in info}
  for name, _, actual, channels in info:
    f = out["features"][name]
    assert f.shape == (2, _ceil_chain(37, actual), _ceil_chain(45, actual), channels), name
    assert f.dtype == jnp.float32
  assert out["logits"].shape == (2, 5) and out["logits"].dtype == jnp.float32


def _plan_table(model):
  plans = model.block_plans()
  return {
    i: [(p.stride, p.dilation) for p in plans if p.stage == i] for i in range(len(effnet.STAGES))
  }


def test_block_strides_and_dilations_follow_timm_and_smp_rules():
  # B0 repeats (1, 2, 2, 3, 3, 4, 1). Undilated: the first block of stages 1, 2, 3, 5 has stride 2.
  b0 = dict(variant="b0", num_classes=0)
  t = _plan_table(effnet.EfficientNet(**b0))
  assert t[3] == [(2, 1), (1, 1), (1, 1)] and t[5] == [(2, 1)] + [(1, 1)] * 3 and t[6] == [(1, 1)]
  # timm: the block whose stride is removed keeps the current dilation; later blocks get it doubled.
  t = _plan_table(effnet.EfficientNet(**b0, output_stride=8))
  assert t[2] == [(2, 1), (1, 1)]
  assert t[3] == [(1, 1), (1, 2), (1, 2)]
  assert t[4] == [(1, 2)] * 3
  assert t[5] == [(1, 2)] + [(1, 4)] * 3
  assert t[6] == [(1, 4)]
  t = _plan_table(effnet.EfficientNet(**b0, output_stride=16))
  assert t[3] == [(2, 1), (1, 1), (1, 1)] and t[5] == [(1, 1)] + [(1, 2)] * 3 and t[6] == [(1, 2)]
  # smp make_dilated: every block of the level gets stride 1 and dilation level // output_stride.
  t = _plan_table(effnet.EfficientNet(**b0, output_stride=8, dilation_rule="smp"))
  assert t[3] == [(1, 2)] * 3 and t[4] == [(1, 2)] * 3 and t[5] == [(1, 4)] * 4 and t[6] == [(1, 4)]
  t = _plan_table(effnet.EfficientNet(**b0, output_stride=16, dilation_rule="smp"))
  assert t[3][0] == (2, 1) and t[5] == [(1, 2)] * 4 and t[6] == [(1, 2)]


def test_depthwise_kernels_and_se_widths():
  model = effnet.EfficientNet(**TINY)
  variables, _ = _init(model)
  params = variables["params"]
  in_ch = 8
  widths = [8, 8, 16, 24, 32, 48, 80]
  for stage, (k, n, out_ch) in enumerate(zip(KERNELS, TINY_REPEATS, widths, strict=True)):
    for j in range(n):
      block = params[f"stage{stage}_block{j}"]
      mid = in_ch if stage == 0 else 6 * in_ch
      assert block["conv_dw"]["kernel"].shape == (k, k, 1, mid)
      assert "bias" not in block["conv_dw"]
      # SE squeezes to a quarter of the block *input* channels (timm se_from_exp=False).
      assert block["se"]["conv_reduce"]["kernel"].shape == (1, 1, mid, in_ch // 4)
      assert block["se"]["conv_expand"]["kernel"].shape == (1, 1, in_ch // 4, mid)
      in_ch = out_ch
  assert params["conv_stem"]["kernel"].shape == (3, 3, 3, 8)
  assert params["conv_head"]["kernel"].shape == (1, 1, 80, 320)  # round_channels(1280, 0.25)
  assert params["classifier"]["kernel"].shape == (320, 5)


def test_drop_path_function():
  x = jnp.ones((64, 2, 2, 3))
  assert effnet.drop_path(x, 0.5, train=False, rng=None) is x  # eval: identity, no rng needed
  assert effnet.drop_path(x, 0.0, train=True, rng=None) is x
  y = np.asarray(effnet.drop_path(x, 0.5, train=True, rng=_key(3)))
  per_example = y.reshape(64, -1)
  assert set(np.unique(per_example)) <= {0.0, 2.0}  # kept examples scaled by 1 / (1 - 0.5)
  assert np.all(per_example.min(axis=1) == per_example.max(axis=1))  # one draw per example
  assert 16 <= (per_example[:, 0] == 0).sum() <= 48
  with pytest.raises(ValueError, match="rate must be in"):
    effnet.drop_path(x, 1.0, train=True, rng=_key(0))
  with pytest.raises(ValueError, match="needs an rng"):
    effnet.drop_path(x, 0.2, train=True, rng=None)


def test_drop_path_schedule_and_model_behaviour():
  model = effnet.EfficientNet(**TINY, drop_path_rate=0.35)
  plans = model.block_plans()
  n = sum(TINY_REPEATS)
  assert [p.drop_path for p in plans] == pytest.approx([0.35 * b / n for b in range(n)])
  # Residual only with stride 1 and unchanged width: stage 0 (8 -> 8) and the second blocks.
  residual = [p.residual for p in plans]
  assert residual == [True] + [False] * 3 + [True, False] * 3
  variables, x = _init(model)
  plain = effnet.EfficientNet(**TINY)
  # Eval: identity, no rng needed, same as the model without drop path.
  a = model.apply(variables, x)
  b = plain.apply(variables, x)
  np.testing.assert_array_equal(a["logits"], b["logits"])

  # Train: batch statistics; different dropout rngs give different outputs, rate 0 needs no rng.
  def run(m, seed):
    rngs = {"dropout": _key(seed)}
    return m.apply(variables, x, train=True, mutable=["batch_stats"], rngs=rngs)[0]

  o1, o2, o1again = run(model, 1), run(model, 2), run(model, 1)
  assert not np.allclose(o1["features"]["stride32"], o2["features"]["stride32"])
  np.testing.assert_array_equal(o1["features"]["stride32"], o1again["features"]["stride32"])
  # stride2 comes from stage 0 whose block has rate 0 (the first block): unaffected by the rng.
  np.testing.assert_array_equal(o1["features"]["stride2"], o2["features"]["stride2"])
  plain.apply(variables, x, train=True, mutable=["batch_stats"])


def test_classifier_dropout_only_in_training():
  model = effnet.EfficientNet(**TINY, drop_rate=0.5)
  variables, x = _init(model)
  np.testing.assert_array_equal(
    model.apply(variables, x)["logits"],
    effnet.EfficientNet(**TINY).apply(variables, x)["logits"],
  )
  outs = [
    model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": _key(s)})[0]
    for s in (1, 2)
  ]
  assert not np.allclose(outs[0]["logits"], outs[1]["logits"])
  np.testing.assert_array_equal(outs[0]["features"]["stride32"], outs[1]["features"]["stride32"])


def test_num_classes_zero_is_features_only():
  model = effnet.EfficientNet(**{**TINY, "num_classes": 0})
  variables, x = _init(model)
  assert set(variables["params"]) == {"conv_stem", "bn1"} | {p.name for p in model.block_plans()}
  out = model.apply(variables, x)
  assert set(out) == {"features"}


def _source_state(table, target):
  """A state dict in PyTorch layout whose every entry the table maps onto ``target`` (random values)."""
  flat = {}
  for tree in target.values():
    flat.update(flatten(tree))
  rng = np.random.default_rng(0)
  state = {}
  for rule in table:
    if rule.kind == "bn":
      for s, t in (
        ("weight", "scale"),
        ("bias", "bias"),
        ("running_mean", "mean"),
        ("running_var", "var"),
      ):
        state[f"{rule.source}.{s}"] = rng.standard_normal(flat[f"{rule.target}/{t}"].shape)
      continue
    shape = flat[rule.target].shape
    if rule.kind == "conv":
      shape = (shape[3], shape[2], shape[0], shape[1])
    elif rule.kind == "linear":
      shape = shape[::-1]
    state[rule.source] = rng.standard_normal(shape)
  return state


@pytest.mark.parametrize("bn", [layers.TORCH_BN, layers.FROZEN_BN])
@pytest.mark.parametrize("num_classes", [5, 0])
def test_key_table_covers_every_variable_with_timm_names(bn, num_classes):
  attrs = {**TINY, "num_classes": num_classes, "bn": bn}
  model = effnet.EfficientNet(**attrs)
  target = jax.eval_shape(model.init, _key(0), jnp.zeros((1, 37, 45, 3)))
  table = effnet.key_table(**attrs)
  sources = {r.source for r in table}
  assert "blocks.0.0.conv_dw.weight" in sources and "blocks.3.1.se.conv_reduce.bias" in sources
  assert "blocks.1.0.conv_pwl.weight" in sources and "blocks.0.0.conv_pw.weight" in sources
  assert ("classifier.weight" in sources) == (num_classes > 0)
  state = _source_state(table, target)
  variables = apply_key_table(state, table, target)
  # Depthwise (C, 1, k, k) -> (k, k, 1, C): value at [i, j, 0, c] is the source's [c, 0, i, j].
  src = state["blocks.2.0.conv_dw.weight"]
  got = variables["params"]["stage2_block0"]["conv_dw"]["kernel"]
  assert src.shape == (48, 1, 5, 5) and got.shape == (5, 5, 1, 48)  # 6 x 8 input channels
  np.testing.assert_allclose(got[3, 1, 0, 17], src[17, 0, 3, 1], rtol=1e-6)
  bn_home = "batch_stats" if bn.frozen else "params"
  np.testing.assert_allclose(
    variables[bn_home]["stage1_block0"]["bn3"]["scale"], state["blocks.1.0.bn3.weight"], rtol=1e-6
  )
  if num_classes:
    np.testing.assert_allclose(
      variables["params"]["classifier"]["kernel"], state["classifier.weight"].T, rtol=1e-6
    )
  del state["blocks.4.1.se.conv_expand.bias"]
  with pytest.raises(KeyTableError, match="missing in checkpoint: blocks.4.1.se.conv_expand.bias"):
    apply_key_table(state, table, target)


def test_head_entries_of_a_full_checkpoint_are_rejected_unless_allowed():
  full = {**TINY, "num_classes": 5}
  model = effnet.EfficientNet(**full)
  state = _source_state(
    effnet.key_table(**full), jax.eval_shape(model.init, _key(0), jnp.zeros((1, 37, 45, 3)))
  )
  enc = effnet.EfficientNet(**{**TINY, "num_classes": 0})
  target = jax.eval_shape(enc.init, _key(0), jnp.zeros((1, 37, 45, 3)))
  table = effnet.key_table(**{**TINY, "num_classes": 0})
  with pytest.raises(KeyTableError, match="unused key in checkpoint: classifier.weight"):
    apply_key_table(state, table, target)
  apply_key_table(state, table, target, allow_unused=effnet.HEAD_PREFIXES)


def test_frozen_batch_norm_and_bfloat16():
  model = effnet.EfficientNet(**TINY, bn=layers.FROZEN_BN)
  variables, x = _init(model)
  assert "bn1" not in variables["params"] and "scale" in variables["batch_stats"]["bn1"]
  a = model.apply(variables, x)
  b = model.apply(variables, x, train=True)  # nothing mutable: frozen BN has no update
  np.testing.assert_array_equal(a["logits"], b["logits"])
  half = effnet.EfficientNet(**TINY, dtype=jnp.bfloat16)
  variables, x = _init(half)
  out = jax.jit(half.apply)(variables, x)
  assert out["features"]["stride8"].dtype == jnp.bfloat16 and out["logits"].dtype == jnp.float32


@pytest.mark.parametrize(
  "attrs,match",
  [
    (dict(output_stride=4), "output_stride must be one of"),
    (dict(dilation_rule="torchvision"), "dilation_rule must be one of"),
    (dict(variant="b7"), "variant must be one of"),
    (dict(num_classes=-1), "num_classes must be >= 0"),
    (dict(drop_path_rate=1.0), "drop_path_rate must be in"),
  ],
)
def test_bad_attributes_raise_one_clear_error(attrs, match):
  model = effnet.EfficientNet(
    **{**dict(TINY, width_multiplier=None, depth_multiplier=None), **attrs}
  )
  with pytest.raises(ValueError, match=match):
    model.feature_info()


def test_bad_input_and_unknown_table_attribute():
  model = effnet.EfficientNet(**TINY)
  with pytest.raises(
    ValueError, match=r"expected input \(B, H, W, 3\), got shape \(1, 32, 32, 4\)"
  ):
    model.init(_key(0), jnp.zeros((1, 32, 32, 4)))
  with pytest.raises(TypeError):
    effnet.key_table(variant="b0", widht_multiplier=1.0)


def test_registry_entries_and_benchmark_signature():
  for v in ("b0", "b1", "b2", "b3", "b4"):
    entry = BACKBONES[f"efficientnet_{v}"]
    model = entry.build(num_classes=0)
    assert isinstance(model, effnet.EfficientNet) and model.variant == v and model.num_classes == 0
    assert entry.key_table(num_classes=0) == effnet.key_table(variant=v, num_classes=0)
    assert entry.preprocessing(output_stride=8) == effnet.preprocessing(v)
  assert effnet.preprocessing("b4") == IMAGENET
  assert (
    effnet.preprocessing("b1") == effnet.INCEPTION
  )  # timm's default b1 tag (ra4_e3600_r240_in1k)
  assert effnet.preprocessing("b1", "ft_in1k") == IMAGENET
  with pytest.raises(ValueError, match="has tags"):
    effnet.preprocessing("b4", "ra4_e3600_r224_in1k")
  model = effnet.EfficientNet(variant="b4", num_classes=1000)  # benchmarks/backbones.py
  assert model.feature_info()[-1] == ("stride32", 32, 32, 448)


def test_init_uses_timm_initialisers():
  # timm _init_weight_goog: conv N(0, sqrt(2 / fan_out)) with fan_out = k * k * out / groups, zero conv
  # bias; classifier U(+-1 / sqrt(out)); BN (1, 0).
  model = effnet.EfficientNet(width_multiplier=0.25, depth_multiplier=0.25, num_classes=4000)
  variables = jax.jit(model.init)(_key(0), jnp.zeros((1, 32, 32, 3)))  # one compile, not one per op
  p = variables["params"]
  head = np.asarray(p["conv_head"]["kernel"])  # (1, 1, 80, 320): fan_out 320
  assert abs(head.std() - math.sqrt(2 / 320)) < 0.05 * math.sqrt(2 / 320)
  dw = np.asarray(p["stage5_block0"]["conv_dw"]["kernel"])  # (5, 5, 1, 192): fan_out 25
  assert abs(dw.std() - math.sqrt(2 / 25)) < 0.1 * math.sqrt(2 / 25)
  fc = np.asarray(p["classifier"]["kernel"])
  assert np.abs(fc).max() <= 1 / math.sqrt(4000) and np.abs(fc).max() > 0.9 / math.sqrt(4000)
  assert not np.any(p["stage1_block0"]["se"]["conv_reduce"]["bias"])
  assert np.all(p["bn1"]["scale"] == 1) and np.all(variables["batch_stats"]["bn1"]["var"] == 1)
