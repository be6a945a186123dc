"""The training loop with a toy model and in-memory data through the real grain pipeline."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from configs import common
from semdepth_jax.train import checkpoint as ckpt_lib
from semdepth_jax.train import config_utils, loop
from semdepth_jax.train import logging as log_lib
from tests.train import _toy


def _assert_trees_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_train_writes_workdir(tmp_path):
  source = _toy.make_source()
  cfg = _toy.config(steps=4, every=2)
  res = loop.train(cfg, tmp_path, components=_toy.components(source))
  assert res.step == 4 and not res.stopped_early
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]
  assert json.loads((tmp_path / "config.json").read_text()) == config_utils.to_dict(cfg)
  records = log_lib.read_jsonl(tmp_path / "metrics.jsonl")
  train = [r for r in records if r["split"] == "train"]
  assert [r["step"] for r in train] == [2, 4]
  assert {"loss", "grad_norm", "learning_rate", "examples_per_s", "depth", "seg"} <= set(train[0])
  assert train[0]["learning_rate"] == pytest.approx(1e-2)
  evals = [r for r in records if r["split"] == "eval"]
  assert len(evals) == 1 and evals[0]["step"] == 4
  # Every eval example counted once (16 examples in batches of 8).
  assert res.eval_metrics["examples"] == 16.0
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))


def test_training_reduces_the_loss(tmp_path):
  source = _toy.make_source()
  cfg = _toy.config(steps=30, every=10)
  with cfg.unlocked():
    cfg.stages.train.optimizer.learning_rate = 0.05
  loop.train(cfg, tmp_path, components=_toy.components(source))
  train = [r for r in log_lib.read_jsonl(tmp_path / "metrics.jsonl") if r["split"] == "train"]
  assert train[-1]["loss"] < 0.5 * train[0]["loss"]


def test_eval_counts_padded_examples_once(tmp_path):
  source = _toy.make_source(16)
  eval_source = _toy.make_source(11, seed=3)
  cfg = _toy.config(steps=2, every=2)
  res = loop.train(cfg, tmp_path, components=_toy.components(source, eval_source))
  assert res.eval_metrics["examples"] == 11.0


@pytest.mark.multidevice
@pytest.mark.parametrize("threads", [0, 2])
def test_kill_and_resume_matches_uninterrupted(tmp_path, threads):
  source = _toy.make_source()

  def cfg():
    return _toy.config(steps=7, mesh=(-1, 1))

  def comps():
    return _toy.components(source, num_threads=threads)

  full = loop.train(cfg(), tmp_path / "a", components=comps())
  part = loop.train(cfg(), tmp_path / "b", components=comps(), stop_at_step=5)
  assert part.stopped_early and part.step == 5
  # The "killed" run left checkpoints 2 and 4 only; step 5 is redone after the restart.
  assert sorted(os.listdir(tmp_path / "b" / "checkpoints")) == ["2", "4"]
  resumed = loop.train(cfg(), tmp_path / "b", components=comps())
  assert resumed.step == 7
  _assert_trees_equal(full.state, resumed.state)
  # A different data order would give different parameters: restarting the data stream from the
  # beginning (no iterator state) must not reproduce the uninterrupted run.
  assert not np.array_equal(
    np.asarray(full.state.params["enc"]["kernel"]),
    np.asarray(part.state.params["enc"]["kernel"]),
  )


def test_resume_restores_data_iterator_state(tmp_path):
  source = _toy.make_source()
  seen = []

  comps = _toy.components(source)
  make_iter = comps.train_iterator

  def recording_iterator(batch_size, seed):
    it = make_iter(batch_size, seed)

    class Recorder:
      def __next__(self):
        b = next(it)
        seen.append(b["image"][:, 0, 0, 0].copy())
        return b

      def get_state(self):
        return it.get_state()

      def set_state(self, s):
        it.set_state(s)

    return Recorder()

  comps.train_iterator = recording_iterator
  loop.train(_toy.config(steps=6), tmp_path / "a", components=comps)
  uninterrupted = list(seen)
  seen.clear()
  loop.train(_toy.config(steps=6), tmp_path / "b", components=comps, stop_at_step=3)
  loop.train(_toy.config(steps=6), tmp_path / "b", components=comps)
  # Steps 1-3, then (after restoring checkpoint 2) steps 3-6: batch 3 is read twice, nothing skipped.
  replay = seen[:3] + seen[4:]
  assert len(replay) == 6
  for a, b in zip(replay, uninterrupted, strict=True):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(seen[2], seen[3])


def _two_stage_config(steps_a=4, steps_b=4):
  c = common.base_config()
  c.image_size = (_toy.H, _toy.W)
  c.num_classes = _toy.NUM_CLASSES
  c.model = ml_collections.ConfigDict({"name": "toy", "features": 4, "dropout_rate": 0.1})
  c.stages = ml_collections.ConfigDict(
    {
      "a": common.stage_config(num_steps=steps_a, batch_size=8, optimizer={"name": "adam"}),
      "b": common.stage_config(
        num_steps=steps_b,
        batch_size=8,
        trainable="^seg_head/",
        model={"dropout_rate": 0.0},
        optimizer={"name": "sgd", "momentum": 0.9, "learning_rate": 0.1},
      ),
    }
  )
  c.stage_order = ("a", "b")
  c.mesh_shape = (1, 1)
  c.checkpoint.every_steps = 3
  c.log_every_steps = 2
  c.eval.batch_size = 8
  c.eval.at_stage_end = False
  c.progress_bar = False
  config_utils.validate_config(c)
  return config_utils.lock(c)


def test_two_stages_freeze_and_resume(tmp_path):
  source = _toy.make_source()
  full = loop.train(_two_stage_config(), tmp_path / "a", components=_toy.components(source))
  assert full.step == 8
  # Stage-end checkpoint of stage a (step 4) holds the parameters the frozen part must keep.
  with ckpt_lib.Checkpointer(tmp_path / "a" / "checkpoints", keep=3) as ck:
    assert ck.all_steps() == [4, 6, 8]
    meta4 = ck.restore_meta(4)
    meta8 = ck.restore_meta(8)
  assert (meta4["stage_name"], meta8["stage_name"]) == ("a", "b")
  # Restore step 4 with stage a's optimiser structure (Adam) via a short run that stops there.
  stage_a = loop.train(
    _two_stage_config(steps_b=4), tmp_path / "c", components=_toy.components(source), stop_at_step=4
  )
  a_params, b_params = stage_a.state.params, full.state.params
  for name in ("enc", "depth_head", "bn"):
    _assert_trees_equal(a_params[name], b_params[name])
  _assert_trees_equal(stage_a.state.batch_stats, full.state.batch_stats)
  assert not np.allclose(a_params["seg_head"]["kernel"], b_params["seg_head"]["kernel"])

  # Interrupt inside stage b (after the stage-a checkpoint at 4 and the periodic one at 6) and resume.
  part = loop.train(
    _two_stage_config(), tmp_path / "b", components=_toy.components(source), stop_at_step=7
  )
  assert part.step == 7
  resumed = loop.train(_two_stage_config(), tmp_path / "b", components=_toy.components(source))
  _assert_trees_equal(full.state, resumed.state)


def test_resume_at_a_stage_boundary(tmp_path):
  source = _toy.make_source()
  full = loop.train(_two_stage_config(3, 3), tmp_path / "a", components=_toy.components(source))
  loop.train(
    _two_stage_config(3, 3), tmp_path / "b", components=_toy.components(source), stop_at_step=4
  )
  resumed = loop.train(_two_stage_config(3, 3), tmp_path / "b", components=_toy.components(source))
  _assert_trees_equal(full.state, resumed.state)


def test_num_epochs_stage_length(tmp_path):
  source = _toy.make_source(16)
  cfg = _toy.config(steps=0, num_epochs=1.5, every=100)
  res = loop.train(cfg, tmp_path, components=_toy.components(source))
  assert res.step == 3  # ceil(1.5 * 16 / 8)


def test_nan_guard_names_the_step_and_keeps_last_checkpoint(tmp_path):
  source = _toy.make_source()
  clean = loop.train(_toy.config(steps=4, every=2), tmp_path, components=_toy.components(source))
  poisoned = _toy.make_source()
  for ex in poisoned:
    ex["depth"] = np.full_like(ex["depth"], np.inf)
  with pytest.raises(FloatingPointError, match="step 5"):
    loop.train(_toy.config(steps=8, every=2), tmp_path, components=_toy.components(poisoned))
  with ckpt_lib.Checkpointer(tmp_path / "checkpoints", keep=3) as ck:
    assert ck.latest_step() == 4
    restored, _ = ck.restore(4, ckpt_lib.abstract_like(clean.state))
  _assert_trees_equal(restored, clean.state)


def test_mismatching_workdir_names_the_leaves(tmp_path):
  source = _toy.make_source()
  loop.train(_toy.config(steps=2), tmp_path, components=_toy.components(source))
  other = _toy.config(steps=4)
  with other.unlocked():
    other.model.features = 5
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match="params/enc/kernel"):
    loop.train(other, tmp_path, components=_toy.components(source))


def test_batch_not_divisible_by_mesh(tmp_path):
  n = jax.device_count()
  if n == 1:
    pytest.skip("needs several devices")
  cfg = _toy.config(steps=2, batch_size=n + 1, mesh=(-1, 1))
  with pytest.raises(ValueError, match="config.stages.train.batch_size"):
    loop.train(cfg, tmp_path, components=_toy.components(_toy.make_source(32)))


def test_trainable_pattern_matching_nothing(tmp_path):
  cfg = _toy.config(steps=2, trainable="^no_such_module/")
  with pytest.raises(ValueError, match="matches no parameter path"):
    loop.train(cfg, tmp_path, components=_toy.components(_toy.make_source()))


def test_plan_stages_and_model_kwargs():
  c = _two_stage_config(5, 7)
  plans = loop.plan_stages(c)
  assert [(p.name, p.start, p.end) for p in plans] == [("a", 0, 5), ("b", 5, 12)]
  kw = loop.model_kwargs(c, c.stages.b)
  assert kw == {"name": "toy", "features": 4, "dropout_rate": 0.0, "num_classes": 3}


def test_stage_end_batchnorm_recalibration(tmp_path):
  import flax.linen as nn

  source = _toy.make_source()
  # every=2: the periodic checkpoint at the last step must not pre-empt the recalibrated stage-end one.
  cfg = _toy.config(steps=2, every=2, recalibrate_bn_batches=3)
  res = loop.train(cfg, tmp_path, components=_toy.components(source))
  # Independent reference: average of the per-batch statistics of the BN input (the 'enc' conv output)
  # over the 3 batches of the recalibration stream (seed = config.seed + 777 for stage 0).
  it = _toy.components(source).train_iterator(8, 777)
  means, variances = [], []
  for _ in range(3):
    image = next(it)["image"]
    x = np.asarray(nn.Conv(4, (3, 3)).apply({"params": res.state.params["enc"]}, image))
    means.append(x.reshape(-1, 4).mean(0))
    variances.append(x.reshape(-1, 4).var(0))
  stats = res.state.batch_stats["bn"]
  np.testing.assert_allclose(stats["mean"], np.mean(means, 0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats["var"], np.mean(variances, 0), rtol=1e-4, atol=1e-6)
  # The stage-end checkpoint holds the recalibrated statistics.
  with ckpt_lib.Checkpointer(tmp_path / "checkpoints", keep=3) as ck:
    restored, _ = ck.restore(2, ckpt_lib.abstract_like(res.state))
  _assert_trees_equal(restored.batch_stats, res.state.batch_stats)
