"""The main job at tiny size: trains both stages, evaluates against the baselines, writes images."""

import json

import numpy as np
import pytest
from PIL import Image

from semdepth_jax import quickstart


@pytest.mark.slow
def test_quickstart_tiny_runs_and_resumes(tmp_path):
  data_dir = str(tmp_path / "tfds")
  work = str(tmp_path / "qs")
  overrides = ["--config.dataset=synthetic_city/tiny", "--config.progress_bar=False"]
  res = quickstart.run(
    work, data_dir=data_dir, size="tiny", steps=2, overrides=overrides, num_images=2
  )
  assert res["step"] == 4  # two stages of 2 batches
  for key in ("abs_rel", "delta1", "miou"):
    assert np.isfinite(res["model"][key]) and np.isfinite(res["baseline"][key])
  # The baseline is a constant prediction: its delta1 is the share of pixels within 1.25x of the mean.
  assert 0.0 <= res["baseline"]["delta1"] <= 1.0
  assert res["baselines"]["majority_class_name"]
  assert len(res["predictions"]) == 2
  # The test frames themselves, as uint8 RGB PNGs at the stored size, to try `semdepth predict` on.
  samples = sorted((tmp_path / "qs" / "samples").glob("*.png"))
  assert len(samples) == 2
  with Image.open(samples[0]) as im:
    assert im.mode == "RGB" and im.size == (80, 48)
  # ... with their ground truth, which `semdepth score` reads next to `semdepth predict`'s outputs.
  gt = np.load(tmp_path / "qs" / "samples_gt" / f"{samples[0].stem}_depth.npy")
  assert gt.shape == (48, 80) and gt.dtype == np.float32 and (gt > 0).mean() > 0.5
  from semdepth_jax.main import main

  pred = str(tmp_path / "pred")
  assert (
    main(["predict", "--workdir", work, "--images", str(samples[0].parent), "--out", pred]) == 0
  )
  out = str(tmp_path / "score.json")
  argv = ["score", "--pred", pred, "--gt", str(tmp_path / "qs" / "samples_gt"), "--out", out]
  argv += ["--gt_pattern", "{stem}_depth.npy", "--pred_seg", pred, "--gt_seg"]
  argv += [str(tmp_path / "qs" / "samples_gt"), "--gt_seg_pattern", "{stem}_labels.png"]
  assert main([*argv, "--dataset", "synthetic_city"]) == 0
  scored = json.loads((tmp_path / "score.json").read_text())
  assert np.isfinite(scored["depth"]["abs_rel"]) and 0 <= scored["segmentation"]["miou"] <= 1
  # Figures: a ground-truth row above a prediction row (RGB | depth + colour bar | labels + legend).
  with Image.open(res["predictions"][0]) as im:
    width, height = im.size
  from semdepth_jax import viz

  assert height == round(2 * viz.ROW_HEIGHT_IN * 100) and width > 2 * height
  saved = json.loads((tmp_path / "qs" / "quickstart_results.json").read_text())
  assert saved["step"] == 4
  table = quickstart.format_table(res)
  assert "abs_rel" in table and "miou" in table
  # Re-running continues from the workdir: nothing left to train, same step, same model metrics.
  again = quickstart.run(work, data_dir=data_dir, size="tiny", steps=2, overrides=overrides)
  assert again["step"] == 4
  assert again["model"]["abs_rel"] == pytest.approx(res["model"]["abs_rel"], rel=1e-5)
