"""Key tables: layout conversions checked by hand, strict errors that name every problem."""

import numpy as np
import pytest

from semdepth_jax.weights import keymap

RNG = np.random.default_rng(0)


def _target():
  return {
    "params": {
      "conv": {"kernel": np.zeros((3, 3, 2, 4), np.float32), "bias": np.zeros(4, np.float32)},
      "fc": {"kernel": np.zeros((4, 5), np.float32)},
      "bn": {"scale": np.zeros(4, np.float32), "bias": np.zeros(4, np.float32)},
    },
    "batch_stats": {"bn": {"mean": np.zeros(4, np.float32), "var": np.zeros(4, np.float32)}},
  }


TABLE = keymap.rules(
  [
    ("conv.weight", "conv/kernel", "conv"),
    ("conv.bias", "conv/bias", "copy"),
    ("fc.weight", "fc/kernel", "linear"),
    ("bn", "bn", "bn"),
  ]
)


def _state():
  return {
    "module.conv.weight": RNG.normal(size=(4, 2, 3, 3)).astype(np.float32),
    "module.conv.bias": RNG.normal(size=4).astype(np.float32),
    "module.fc.weight": RNG.normal(size=(5, 4)).astype(np.float32),
    "module.bn.weight": RNG.normal(size=4).astype(np.float32),
    "module.bn.bias": RNG.normal(size=4).astype(np.float32),
    "module.bn.running_mean": RNG.normal(size=4).astype(np.float32),
    "module.bn.running_var": RNG.uniform(1, 2, size=4).astype(np.float32),
    "module.bn.num_batches_tracked": np.array(7),
  }


def test_round_trip_layouts_by_hand():
  state = _state()
  out = keymap.apply_key_table(state, TABLE, _target())
  w = state["module.conv.weight"]
  # Output channel o, input channel i, tap (y, x): PyTorch w[o, i, y, x] == ours k[y, x, i, o].
  for o, i, y, x in [(0, 0, 0, 0), (3, 1, 2, 1), (1, 0, 1, 2)]:
    assert out["params"]["conv"]["kernel"][y, x, i, o] == w[o, i, y, x]
  np.testing.assert_array_equal(out["params"]["fc"]["kernel"], state["module.fc.weight"].T)
  np.testing.assert_array_equal(out["params"]["bn"]["scale"], state["module.bn.weight"])
  np.testing.assert_array_equal(out["batch_stats"]["bn"]["var"], state["module.bn.running_var"])
  # Frozen BN keeps scale/bias in batch_stats: the same table fills it.
  frozen = _target()
  frozen["batch_stats"]["bn"].update(frozen["params"].pop("bn"))
  out = keymap.apply_key_table(state, TABLE, frozen)
  np.testing.assert_array_equal(out["batch_stats"]["bn"]["scale"], state["module.bn.weight"])


def test_grouped_and_3d_conv_layouts():
  w = RNG.normal(size=(6, 1, 3, 3)).astype(np.float32)  # depthwise, groups = 6
  assert keymap.convert_array(w, "conv").shape == (3, 3, 1, 6)
  w3 = RNG.normal(size=(4, 2, 3, 5, 7)).astype(np.float32)
  k = keymap.convert_array(w3, "conv")
  assert k.shape == (3, 5, 7, 2, 4) and k[2, 4, 6, 1, 3] == w3[3, 1, 2, 4, 6]


def test_every_problem_is_named_in_one_error():
  state = _state()
  del state["module.conv.bias"]
  state["module.fc.weight"] = np.zeros((5, 3), np.float32)
  state["module.extra.weight"] = np.zeros(2, np.float32)
  target = _target()
  target["params"]["head"] = {"kernel": np.zeros((2, 2), np.float32)}
  with pytest.raises(keymap.KeyTableError) as e:
    keymap.apply_key_table(state, TABLE, target, where="w.pth")
  msg = str(e.value)
  assert "missing in w.pth: conv.bias (for conv/bias)" in msg
  assert "shape mismatch at params/fc/kernel: expected (4, 5), got (3, 5)" in msg
  assert "not in the key table: params/head/kernel" in msg
  assert "unused key in w.pth: extra.weight (2,)" in msg
  assert "(4 problems)" in msg
  # Unused keys can be allowed by prefix (e.g. a dropped classifier).
  state = _state()
  state["module.extra.weight"] = np.zeros(2, np.float32)
  keymap.apply_key_table(state, TABLE, _target(), allow_unused=("extra.",))


def test_drop_rules_consume_optional_keys():
  table = [*TABLE, keymap.Rule("head.weight", "", "drop"), keymap.Rule("head.bias", "", "drop")]
  state = _state()
  state["head.weight"] = np.zeros((7, 4), np.float32)  # present: consumed, no error
  state = {k.removeprefix("module."): v for k, v in state.items()}
  out = keymap.apply_key_table(state, table, _target())
  assert "head" not in out["params"]
  # Absent (head.bias, and head.weight below): no error either; other unused keys still are.
  del state["head.weight"]
  state["other.weight"] = np.zeros(2, np.float32)
  with pytest.raises(
    keymap.KeyTableError, match=r"(?s)\(1 problems\).*unused key in checkpoint: other"
  ):
    keymap.apply_key_table(state, table, _target())
  with pytest.raises(ValueError, match="kind must be one of"):
    keymap.Rule("a", "b", "skip")
