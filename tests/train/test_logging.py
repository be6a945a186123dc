"""Metric writers and the finite check."""

import math

import numpy as np
import pytest

from semdepth_jax.train import logging as log_lib


def test_metric_writer_jsonl_and_tensorboard(tmp_path):
  with log_lib.MetricWriter(tmp_path) as w:
    vals = w.write(3, {"loss": np.float32(0.5), "arr": np.zeros(3), "name": "x", "n": 2})
    w.write(4, {"loss": float("nan")}, split="eval")
  assert vals == {"loss": 0.5, "n": 2.0}
  recs = log_lib.read_jsonl(tmp_path / "metrics.jsonl")
  assert [(r["step"], r["split"]) for r in recs] == [(3, "train"), (4, "eval")]
  assert recs[0]["loss"] == 0.5 and "arr" not in recs[0] and "name" not in recs[0]
  assert recs[1]["loss"] == "nan"  # JSON has no NaN; written as a string
  assert list((tmp_path / "tb").iterdir())
  # Appends when reopened (a resumed run continues the same file).
  with log_lib.MetricWriter(tmp_path, tensorboard=False) as w:
    w.write(5, {"loss": 1.0})
  assert len(log_lib.read_jsonl(tmp_path / "metrics.jsonl")) == 3


def test_disabled_writer_writes_nothing(tmp_path):
  w = log_lib.MetricWriter(tmp_path / "x", enabled=False)
  assert w.write(1, {"loss": 1.0}) == {"loss": 1.0}
  w.close()
  assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
  "metrics",
  [
    {"loss": float("nan"), "grad_norm": 1.0},
    {"loss": 1.0, "grad_norm": math.inf},
    {"loss": 1.0, "grad_norm": 1.0, "finite": np.bool_(False)},
  ],
)
def test_check_finite_raises_with_step(metrics):
  with pytest.raises(FloatingPointError, match="at step 17"):
    log_lib.check_finite(17, metrics)


def test_check_finite_passes_finite_values():
  log_lib.check_finite(1, {"loss": np.float32(2.0), "grad_norm": 0.0, "finite": True})


def test_progress_reports_examples_per_second():
  p = log_lib.Progress(10, enabled=False)
  p.update(1, 8)
  rate = p.update(1, 8, loss=1.0)
  assert rate > 0
  assert p.update(1, 8) == 0.0
  p.close()


def test_write_images_goes_to_tensorboard_only_when_enabled(tmp_path):
  import numpy as np

  from semdepth_jax.train.logging import MetricWriter

  calls = []

  class FakeTB:
    def add_image(self, tag, img, step, dataformats):
      calls.append((tag, img.shape, img.dtype, step, dataformats))

    def close(self):
      pass

  w = MetricWriter(tmp_path, tensorboard=False)
  assert not w.writes_images
  w.write_images(1, {"a": np.zeros((2, 3, 3), np.uint8)})  # no TensorBoard: nothing to call.
  w._tb = FakeTB()
  assert w.writes_images
  w.write_images(7, {"examples/0": np.zeros((2, 3, 3), np.uint8)}, prefix="eval/")
  assert calls == [("eval/examples/0", (2, 3, 3), np.uint8, 7, "HWC")]
  w.close()
  assert MetricWriter(tmp_path, enabled=False).writes_images is False


def test_check_finite_appends_the_hint():
  with pytest.raises(FloatingPointError, match=r"at step 3.*grad_clip_norm\. Random weights\.$"):
    log_lib.check_finite(3, {"loss": float("nan"), "grad_norm": 1.0}, None, "Random weights.")


def test_random_init_hint_only_without_pretrained_weights():
  import ml_collections

  from semdepth_jax.train import loop

  cfg = ml_collections.ConfigDict({"model_init": {"path": None, "prefix": "backbone"}})
  assert "model_init.path is unset" in loop._random_init_hint(cfg)
  cfg.model_init.path = "weights/resnet101_deeplab"
  assert loop._random_init_hint(cfg) == ""
