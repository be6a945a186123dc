"""Damaged checkpoints are detected, named (step and file), moved aside, and the newest intact one used."""

import glob
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.train import checkpoint as ckpt_lib
from tests.train.test_checkpoint import _state


def _data_file(step_dir):
  files = sorted(glob.glob(os.path.join(step_dir, "variables", "ocdbt.process_0", "d", "*")))
  return max(files, key=os.path.getsize)


def _truncate(step_dir):
  path = _data_file(step_dir)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  return os.path.relpath(path, step_dir)


def _delete(step_dir):
  path = _data_file(step_dir)
  os.remove(path)
  return os.path.relpath(path, step_dir)


def _flip_byte(step_dir):
  path = _data_file(step_dir)
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    b = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([b[0] ^ 0x01]))
  return os.path.relpath(path, step_dir)


def _empty_manifest(step_dir):
  open(os.path.join(step_dir, "variables", "manifest.ocdbt"), "wb").close()
  return "variables/manifest.ocdbt"


def _no_metadata(step_dir):
  os.remove(os.path.join(step_dir, "train", "_METADATA"))
  return "train/_METADATA"


def _no_meta(step_dir):
  shutil.rmtree(os.path.join(step_dir, "meta"))
  return "meta/"


DAMAGES = {
  "truncated data file": _truncate,
  "deleted data file": _delete,
  "flipped byte": _flip_byte,
  "empty manifest": _empty_manifest,
  "missing _METADATA": _no_metadata,
  "missing meta": _no_meta,
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """Checkpoints 1 and 2 (different parameters), saved once; tests work on copies."""
  root = tmp_path_factory.mktemp("saved")
  s1 = _state()
  s2 = s1.replace(params=jax.tree.map(lambda x: x + 1, s1.params), step=jnp.asarray(12, jnp.int32))
  with ckpt_lib.Checkpointer(root, keep=3) as ck:
    ck.save(1, s1, {"s": 1})
    ck.save(2, s2, {"s": 2})
  return root, s1


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_newest_checkpoint_falls_back(tmp_path, saved, damage, caplog):
  root, s1 = saved
  work = tmp_path / "ck"
  shutil.copytree(root, work)
  rel = DAMAGES[damage](os.fspath(work / "2"))
  with ckpt_lib.Checkpointer(work, keep=3) as ck:
    # A direct restore of the damaged step: one line naming the step and the file, no traceback dump.
    with pytest.raises(ckpt_lib.CheckpointDamagedError) as err:
      ck.restore(2, ckpt_lib.abstract_like(s1))
    msg = str(err.value)
    assert "checkpoint step 2" in msg and rel in msg and "\n" not in msg
    with caplog.at_level(logging.WARNING, logger="semdepth_jax.train.checkpoint"):
      assert ck.latest_intact_step() == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "checkpoint step 2" in warnings[0] and rel in warnings[0] and "2.damaged" in warnings[0]
    assert ck.all_steps() == [1]
    restored, meta = ck.restore(None, ckpt_lib.abstract_like(s1))
  assert meta == {"s": 1}
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(s1), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Moved aside, not deleted.
  assert sorted(os.listdir(work)) == ["1", "2.damaged"]


def test_intact_checkpoints_verify(saved):
  root, _ = saved
  with ckpt_lib.Checkpointer(root, keep=3) as ck:
    assert ck.verify(1) is None and ck.verify(2) is None
    assert ck.latest_intact_step() == 2
  assert os.path.isfile(root / "2" / ckpt_lib.CHECKSUM_FILE)
