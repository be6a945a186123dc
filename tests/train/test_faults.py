"""Fault injection: runs killed at chosen points resume to exactly the uninterrupted run.

Kills are simulated in-process (``Components.fault_hook`` raises a ``BaseException`` at a named point:
after a train step, before / after starting a checkpoint save, before an evaluation and after its results
were logged); a save cut short is simulated as Orbax leaves it (the step folder still under its temporary
name). Checked after the last restart: final parameters bitwise equal, every evaluation present once,
``metrics.jsonl`` equal to the uninterrupted run's (wall-clock fields aside).
"""

import json
import logging
import os

import jax
import numpy as np
import pytest

from semdepth_jax.train import logging as log_lib
from semdepth_jax.train import loop
from tests.train import _toy

_CLOCK_FIELDS = ("time", "examples_per_s")


class _Kill(BaseException):
  """Not an ``Exception``: nothing in the loop may swallow it (like a SIGKILL)."""


def _config():
  cfg = _toy.config(steps=6, every=2)
  with cfg.unlocked():
    cfg.log_every_steps = 3  # windows straddle checkpoints 2 and 4
    cfg.eval.every_steps = 3  # a periodic evaluation between checkpoints, plus the final one
    cfg.eval.image_summaries = 0
  return cfg


def _comps(source, kills=None, events=None):
  comps = _toy.components(source)

  def hook(point, step):
    if events is not None:
      events.append((point, step))
    if kills is not None and (point, step) in kills:
      kills.remove((point, step))
      raise _Kill(f"{point} {step}")

  comps.fault_hook = hook
  return comps


def _log(workdir):
  return [
    {k: v for k, v in r.items() if k not in _CLOCK_FIELDS}
    for r in log_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  ]


def _assert_same_state(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _tear_checkpoint(workdir, step):
  """What a kill during Orbax's write leaves: the step's files under a temporary folder name."""
  ck = os.path.join(workdir, "checkpoints")
  os.rename(
    os.path.join(ck, str(step)), os.path.join(ck, f"{step}.orbax-checkpoint-tmp-1700000000")
  )


def test_killed_runs_resume_to_the_uninterrupted_run(tmp_path):
  source = _toy.make_source()
  events = []
  full = loop.train(_config(), tmp_path / "full", components=_comps(source, events=events))
  reference = _log(tmp_path / "full")
  assert [(r["step"], r["split"]) for r in reference] == [
    (3, "train"),
    (3, "eval"),
    (6, "train"),
    (6, "eval"),
  ]
  # Kill points: a write-torn checkpoint, a periodic evaluation, and one more point drawn at random
  # from the run's events (fixed seed). The final evaluation: next test.
  kills = [("checkpoint_written", 4), ("eval", 3)]
  others = [e for e in events if e not in kills]
  kills.append(others[int(np.random.default_rng(0).integers(0, len(others)))])
  kills.sort(key=events.index)  # each kill point recurs after the restart from the previous one
  work = tmp_path / "killed"
  restarts = 0
  while True:
    pending = list(kills[:1])
    try:
      result = loop.train(_config(), work, components=_comps(source, kills=pending))
      break
    except _Kill as k:
      restarts += 1
      if str(k) == "checkpoint_written 4":
        _tear_checkpoint(work, 4)
      kills.pop(0)
  assert restarts == 3 and not kills
  assert result.step == 6
  _assert_same_state(full.state, result.state)
  assert _log(work) == reference
  done = json.loads((work / loop.EVALS_DONE_FILE).read_text())["done"]
  assert done == ["3:eval", "6:eval"]
  assert result.eval_metrics["rmse"] == full.eval_metrics["rmse"]


@pytest.mark.parametrize("point", ["eval", "eval_written"])
def test_restart_after_kill_in_final_evaluation_runs_it(tmp_path, point):
  """Killed before the final evaluation or after its line was logged (not yet recorded as done)."""
  source = _toy.make_source()
  cfg = _toy.config(steps=2, every=2)
  with pytest.raises(_Kill):
    loop.train(cfg, tmp_path, components=_comps(source, kills=[(point, 2)]))
  assert len(_log(tmp_path)) == (1 if point == "eval" else 2)
  result = loop.train(cfg, tmp_path, components=_comps(source))
  assert [(r["step"], r["split"]) for r in _log(tmp_path)] == [(2, "train"), (2, "eval")]
  assert result.eval_metrics["examples"] == 16.0
  # A further restart has nothing left to do and repeats nothing.
  loop.train(cfg, tmp_path, components=_comps(source))
  assert len(_log(tmp_path)) == 2


def test_damaged_newest_checkpoint_is_set_aside_and_the_run_redone(tmp_path, caplog):
  source = _toy.make_source()
  cfg = _toy.config(steps=4, every=2)
  full = loop.train(cfg, tmp_path, components=_comps(source))
  reference = _log(tmp_path)
  from tests.train.test_checkpoint_damage import _flip_byte

  rel = _flip_byte(os.fspath(tmp_path / "checkpoints" / "4"))
  with caplog.at_level(logging.WARNING, logger="semdepth_jax"):
    redone = loop.train(cfg, tmp_path, components=_comps(source))
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any("checkpoint step 4" in w and rel in w for w in warnings)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4", "4.damaged"]
  _assert_same_state(full.state, redone.state)
  assert _log(tmp_path) == reference


def test_divergence_before_the_first_checkpoint_says_so(tmp_path):
  poisoned = _toy.make_source()
  for ex in poisoned:
    ex["depth"] = np.full_like(ex["depth"], np.inf)
  with pytest.raises(FloatingPointError) as err:
    loop.train(_toy.config(steps=4, every=2), tmp_path, components=_toy.components(poisoned))
  msg = str(err.value)
  assert "step 1" in msg and "No checkpoint has been written yet" in msg
  assert "intact" not in msg
