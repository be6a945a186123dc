"""The Orbax wrapper: round trip, keep-latest-K, JSON meta and shape/dtype validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.train import checkpoint as ckpt_lib
from semdepth_jax.train import optim
from semdepth_jax.train.state import create_state


def _state(width=3, dtype=jnp.float32, accum=2):
  params = {
    "enc": {"kernel": jnp.arange(2 * width, dtype=dtype).reshape(2, width)},
    "b": jnp.ones(4),
  }
  stats = {"bn": {"mean": jnp.full((width,), 0.5)}}
  tx = optim.make_optimizer(
    {"name": "adam", "grad_accum_steps": accum}, optim.make_schedule({"name": "constant"}, 0.1, 1)
  )
  return create_state(params, stats, tx.init(params), jax.random.PRNGKey(7), step=11)


def test_round_trip_with_meta(tmp_path):
  state = _state()
  meta = {"stage_index": 1, "stage_name": "depth", "data_iterator": {"next_index": 42}}
  with ckpt_lib.Checkpointer(tmp_path / "ckpt", keep=2) as ck:
    ck.save(11, state, meta)
    ck.wait()
    assert ck.latest_step() == 11
    restored, rmeta = ck.restore(None, ckpt_lib.abstract_like(state))
    assert ck.restore_meta() == meta
  assert rmeta == meta
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(a).dtype == np.asarray(b).dtype
  assert type(restored) is type(state)


def test_keeps_latest_k(tmp_path):
  state = _state()
  with ckpt_lib.Checkpointer(tmp_path, keep=2) as ck:
    for s in (1, 2, 3, 4, 5):
      ck.save(s, state.replace(step=jnp.asarray(s, jnp.int32)), {"s": s})
    ck.wait()
    assert ck.all_steps() == [4, 5]
  # A fresh manager on the same folder sees the same checkpoints.
  with ckpt_lib.Checkpointer(tmp_path, keep=2) as ck:
    assert ck.all_steps() == [4, 5]
    restored, meta = ck.restore(4, ckpt_lib.abstract_like(state))
    assert int(restored.step) == 4 and meta == {"s": 4}


def test_saving_an_existing_step_is_skipped(tmp_path):
  with ckpt_lib.Checkpointer(tmp_path, keep=3) as ck:
    ck.save(3, _state(), {"v": 1})
    ck.wait()
    ck.save(3, _state(), {"v": 2})
    ck.wait()
    assert ck.restore_meta(3) == {"v": 1}


def test_restore_mismatch_names_the_leaves(tmp_path):
  with ckpt_lib.Checkpointer(tmp_path, keep=1) as ck:
    ck.save(1, _state(width=3), {})
    ck.wait()
    target = ckpt_lib.abstract_like(_state(width=5))
    with pytest.raises(ckpt_lib.CheckpointMismatchError) as err:
      ck.restore(1, target)
  msg = str(err.value)
  assert "params/enc/kernel: stored float32[2, 3] vs expected float32[2, 5]" in msg
  assert "batch_stats/bn/mean: stored float32[3] vs expected float32[5]" in msg
  # Adam moments of the kernel are named too.
  assert "opt_state" in msg and "enc/kernel" in msg
  assert "params/b" not in msg


def test_restore_dtype_and_structure_mismatch(tmp_path):
  with ckpt_lib.Checkpointer(tmp_path, keep=1) as ck:
    ck.save(1, _state(), {})
    ck.wait()
    wrong_dtype = ckpt_lib.abstract_like(_state(dtype=jnp.bfloat16))
    with pytest.raises(
      ckpt_lib.CheckpointMismatchError, match=r"params/enc/kernel: stored float32"
    ):
      ck.restore(1, wrong_dtype)
    no_accum = ckpt_lib.abstract_like(_state(accum=1))
    with pytest.raises(
      ckpt_lib.CheckpointMismatchError, match="not expected by the current config"
    ):
      ck.restore(1, no_accum)


def test_no_checkpoint_raises(tmp_path):
  with ckpt_lib.Checkpointer(tmp_path, keep=1) as ck:
    assert ck.latest_step() is None
    with pytest.raises(FileNotFoundError):
      ck.restore_meta()


def test_keep_must_be_positive(tmp_path):
  with pytest.raises(ValueError, match="keep"):
    ckpt_lib.Checkpointer(tmp_path, keep=0)


@pytest.mark.parametrize("state", [{"a": [1, 2], "b": "x"}, b"\x00\x01binary", None])
def test_iterator_state_encoding_round_trip(state):
  import json

  enc = ckpt_lib.encode_iterator_state(state)
  assert ckpt_lib.decode_iterator_state(json.loads(json.dumps(enc))) == state


def test_check_compatible_reports_missing_and_extra():
  stored = {
    "a": jax.ShapeDtypeStruct((2,), jnp.float32),
    "old": jax.ShapeDtypeStruct((1,), jnp.int32),
  }
  target = {
    "a": jax.ShapeDtypeStruct((2,), jnp.float32),
    "new": jax.ShapeDtypeStruct((3,), jnp.float32),
  }
  with pytest.raises(ckpt_lib.CheckpointMismatchError) as err:
    ckpt_lib.check_compatible(stored, target, where="ckpt 5")
  msg = str(err.value)
  assert "new: expected by the current config, missing in the ckpt 5" in msg
  assert "old: in the ckpt 5, not expected by the current config" in msg
  assert "  a:" not in msg
  ckpt_lib.check_compatible(stored, dict(stored))
