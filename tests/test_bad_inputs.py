"""Bad inputs and bad configs (issue 15): one clear line naming the file or key, exit status 2.

One table: each row builds a bad input in ``tmp_path``, runs the command (``semdepth_jax.main.main``, in
process) or, where the command needs a trained model, the function the command calls, and returns the exit
status and what was printed. Every row checks the status (2 = user error; 0 = a warning that does not stop
the command; never 1, the "training diverged" status), that one line names the file or config key together
with the expected and the actual, and that no traceback was printed. ``train`` rows must fail before
anything is built: no workdir checkpoints, and (by construction) before the dataset is opened.

Warnings are rows too: NaN predictions in ``semdepth score``, subfolders ``semdepth predict`` skips, and an
evaluation that found no valid pixel.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import tarfile
import zipfile
from collections.abc import Callable

import numpy as np
import pytest
from scipy import io as sio

from semdepth_jax import evaluate, metrics, predict
from semdepth_jax.main import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SSEG = os.path.join(REPO, "configs", "ssegdepnet.py")
TINY_UNET = f"{SSEG}:model=unet,size=tiny,steps=2"


@dataclasses.dataclass
class Outcome:
  """What a row observed: exit status (None = a library call), printed text, and what one line must name."""

  status: int | None
  text: str
  names: tuple[str, ...]
  workdir: str | None = None


def _cli(argv: list[str], capsys, names: tuple[str, ...], workdir: str | None = None) -> Outcome:
  status = main(argv)
  out = capsys.readouterr()
  return Outcome(status, out.out + out.err, names, workdir)


# --- train: config values (checked before the dataset is opened or a model is initialised) -------------


def _train(tmp_path, capsys, spec: str, overrides: list[str], names: tuple[str, ...]) -> Outcome:
  workdir = str(tmp_path / "w")
  # A data dir without any dataset: reaching the dataset would be a different error.
  argv = ["train", "--config", spec, "--workdir", workdir, "--data_dir", str(tmp_path / "tfds")]
  return _cli(argv + overrides, capsys, names, workdir)


def keep_zero(tmp_path, capsys):
  return _train(
    tmp_path,
    capsys,
    TINY_UNET,
    ["--config.checkpoint.keep=0"],
    ("config.checkpoint.keep", ">= 1", "0"),
  )


def mesh_too_big(tmp_path, capsys):
  return _train(
    tmp_path,
    capsys,
    TINY_UNET,
    ["--config.mesh_shape=(64, 1)"],
    ("config.mesh_shape", "needs 64 devices", "are available"),
  )


def image_size_not_divisible(tmp_path, capsys):
  # The U-Net pools 4 times: H and W must be multiples of 16.
  return _train(
    tmp_path,
    capsys,
    TINY_UNET,
    ["--config.image_size=(33, 48)"],
    ("config.image_size", "(33, 48)", "divisible by", "16"),
  )


def image_size_zero(tmp_path, capsys):
  return _train(
    tmp_path,
    capsys,
    TINY_UNET,
    ["--config.image_size=(0, 48)"],
    ("config.image_size", ">= 1", "(0, 48)"),
  )


def eval_batch_negative(tmp_path, capsys):
  # Used to surface only at the final evaluation, after all training.
  return _train(
    tmp_path,
    capsys,
    TINY_UNET,
    ["--config.eval.batch_size=-1"],
    ("config.eval.batch_size", ">= 1", "-1"),
  )


def steps_negative(tmp_path, capsys):
  # Used to be ignored (the preset's default length trained instead).
  return _train(
    tmp_path, capsys, f"{SSEG}:model=unet,size=tiny,steps=-5", [], ("steps", ">= 0", "-5")
  )


def num_classes_mismatch(tmp_path, capsys):
  # synthetic_city has 14 classes; 5 used to train silently with labels >= 5 ignored.
  return _train(
    tmp_path,
    capsys,
    TINY_UNET,
    ["--config.num_classes=5"],
    ("config.num_classes", "5", "14 classes", "synthetic_city"),
  )


# --- data build: downloaded files ------------------------------------------------------------------------


def _build(tmp_path, capsys, dataset: str, manual_dir, names: tuple[str, ...]) -> Outcome:
  argv = ["data", "build", "--dataset", dataset, "--manual_dir", str(manual_dir)]
  return _cli(argv + ["--data_dir", str(tmp_path / "tfds")], capsys, names)


def manual_dir_missing(tmp_path, capsys):
  path = tmp_path / "nowhere"
  return _build(tmp_path, capsys, "camvid", path, (f"--manual_dir {path}", "does not exist"))


def manual_dir_empty(tmp_path, capsys):
  path = tmp_path / "empty"
  path.mkdir()
  return _build(tmp_path, capsys, "camvid", path, (f"--manual_dir {path}", "an empty folder"))


def truncated_tar_gz(tmp_path, capsys):
  src = tmp_path / "src" / "trainannot"
  src.mkdir(parents=True)
  (src / "a.bin").write_bytes(np.random.default_rng(0).bytes(100_000))  # incompressible
  manual = tmp_path / "manual"
  manual.mkdir()
  archive = manual / "camvid.tar.gz"
  with tarfile.open(archive, "w:gz") as t:
    t.add(src, arcname="trainannot")
  data = archive.read_bytes()
  archive.write_bytes(data[: len(data) // 2])  # an interrupted download
  return _build(tmp_path, capsys, "camvid", manual, (str(archive), "truncated", "EOFError"))


def _damaged_zip(path) -> str:
  """Writes a zip whose one deflated member has a broken stream (zlib.error); returns the member."""
  member = "trainannot/a.txt"
  words = np.random.default_rng(0).choice(["road", "car", "tree", "sky"], size=5000)
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr(member, " ".join(words))
  data = bytearray(buf.getvalue())
  start = 30 + len(member)  # the local header is 30 bytes + the name (no extra field)
  data[start : start + 4] = b"\xff\xff\xff\xff"  # invalid deflate block type
  path.write_bytes(bytes(data))
  return member


def corrupt_zip_extracted(tmp_path, capsys):
  manual = tmp_path / "manual"
  manual.mkdir()
  archive = manual / "camvid.zip"
  _damaged_zip(archive)
  return _build(tmp_path, capsys, "camvid", manual, (str(archive), "cannot extract", "error"))


def corrupt_zip_read_in_place(tmp_path, capsys):
  # Cityscapes / SUN RGB-D read members of their zips in place (data_builders.archive).
  from data_builders import archive

  path = tmp_path / "leftImg8bit_trainvaltest.zip"
  member = _damaged_zip(path)
  source = archive.ZipOrFolder(path, "trainannot")
  with pytest.raises(ValueError) as e:
    source.file(member).read_bytes()
  return Outcome(None, str(e.value), (f"{path}:{member}", "cannot read archive member", "error"))


def _nyu_with_splits(tmp_path, capsys, splits_bytes: bytes, names: tuple[str, ...]) -> Outcome:
  manual = tmp_path / "manual"
  (manual / "joint").mkdir(parents=True)
  for name in ("000001.png", "depth_gt_000001.png", "segm_gt_000001.png"):
    (manual / "joint" / name).write_bytes(b"exists")  # read only after splits.mat
  splits = manual / "splits.mat"
  splits.write_bytes(splits_bytes)
  names = tuple(n.format(splits=splits) for n in names)
  return _build(tmp_path, capsys, "nyu_depth_v2_labeled/40", manual, names)


def _splits_mat(train, compress: bool = True) -> bytes:
  buf = io.BytesIO()
  sio.savemat(buf, {"trainNdxs": train, "testNdxs": np.arange(800, 1450)}, do_compression=compress)
  return buf.getvalue()


def corrupt_splits_mat(tmp_path, capsys):
  data = bytearray(_splits_mat(np.arange(1, 800)))
  data[len(data) // 2 : len(data) // 2 + 8] = b"\x00" * 8  # damaged compressed variable
  names = ("{splits}", "cannot read as a MATLAB v5 .mat file")
  return _nyu_with_splits(tmp_path, capsys, bytes(data), names)


def splits_mat_fractional_index(tmp_path, capsys):
  data = _splits_mat(np.array([1.0, 2.5, 3.0]))
  names = ("{splits}", "trainNdxs must hold integer frame indices", "2.5")
  return _nyu_with_splits(tmp_path, capsys, data, names)


# --- warnings: score, predict, evaluate --------------------------------------------------------------------


def score_nan_predictions(tmp_path, capsys):
  pred, gt = tmp_path / "pred", tmp_path / "gt"
  pred.mkdir()
  gt.mkdir()
  depth = np.full((4, 6), 3.0, np.float32)
  bad = depth * 1.1
  bad[0, 0], bad[1, 1] = np.nan, np.inf
  np.save(gt / "a.npy", depth)
  np.save(pred / "a.npy", bad)
  np.save(gt / "b.npy", depth)
  np.save(pred / "b.npy", depth * 1.2)
  argv = ["score", "--pred", str(pred), "--gt", str(gt)]
  return _cli(argv, capsys, ("2 non-finite value(s)", str(pred / "a.npy"), "NaN/inf"))


def predict_skips_subfolder(tmp_path, capsys):
  # What every predict form (plain, exported, routed) logs for a folder argument (no model needed).
  folder = tmp_path / "images"
  (folder / "left").mkdir(parents=True)
  (folder / "left" / "x.png").write_bytes(b"")
  (folder / "y.png").write_bytes(b"")
  logged: list[str] = []
  files, _ = predict.gather_images([folder], logged.append)
  assert [f.name for f in files] == ["y.png"]
  return Outcome(0, "\n".join(logged), (str(folder), "skipped 1 subfolder", "left", "recursively"))


def evaluate_split_without_valid_pixels(tmp_path, capsys, caplog=None):
  # Real evaluator over a batch with no valid depth (all 0) and no labelled pixel (all 255).
  ev = evaluate.JointEvaluator(
    metrics.get_protocol("standard"), num_classes=2, class_names=("a", "b")
  )
  batch = {
    "image": np.zeros((2, 4, 5, 3), np.float32),
    "depth": np.zeros((2, 4, 5), np.float32),
    "segmentation": np.full((2, 4, 5), 255, np.int32),
  }
  outputs = {"depth": np.ones((2, 4, 5, 1), np.float32), "seg_logits": np.zeros((2, 4, 5, 2))}
  results = ev.finish(ev.update(ev.init(), outputs, batch))
  assert "depth" not in results and "segmentation" not in results
  text = evaluate.empty_split_warning("synthetic_city/tiny", "validation", "standard", results)
  return Outcome(
    0, text or "", ("synthetic_city/tiny [validation]", "no valid pixels", "2 example")
  )


CASES: dict[str, Callable] = {
  f.__name__: f
  for f in (
    manual_dir_missing,
    manual_dir_empty,
    truncated_tar_gz,
    corrupt_zip_extracted,
    corrupt_zip_read_in_place,
    corrupt_splits_mat,
    splits_mat_fractional_index,
    keep_zero,
    mesh_too_big,
    image_size_not_divisible,
    image_size_zero,
    eval_batch_negative,
    steps_negative,
    num_classes_mismatch,
    score_nan_predictions,
    predict_skips_subfolder,
    evaluate_split_without_valid_pixels,
  )
}
"""Row name -> builder of the bad input; the expected status is in EXPECTED_STATUS."""

EXPECTED_STATUS = {
  "corrupt_zip_read_in_place": None,  # a library call (the builders' reader)
  "score_nan_predictions": 0,
  "predict_skips_subfolder": 0,
  "evaluate_split_without_valid_pixels": 0,
}
"""Rows that are not an exit-2 user error."""


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, capsys, caplog):
  caplog.set_level(logging.WARNING)
  outcome = CASES[name](tmp_path, capsys)
  text = outcome.text
  assert outcome.status == EXPECTED_STATUS.get(name, 2), text
  assert "Traceback" not in text, text
  lines = [line for line in text.splitlines() if all(n in line for n in outcome.names)]
  assert lines, f"no single line names all of {outcome.names}:\n{text}"
  if outcome.workdir is not None:  # train: nothing was built or saved
    assert not os.path.exists(os.path.join(outcome.workdir, "checkpoints")), text
