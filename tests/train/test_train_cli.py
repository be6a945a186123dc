"""``semdepth train`` and ``semdepth quickstart`` command-line handling."""

import argparse
import json
import os

import pytest

from semdepth_jax import main as main_lib
from semdepth_jax.train import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SSEG = os.path.join(REPO, "configs", "ssegdepnet.py")


def _parser():
  parser = argparse.ArgumentParser(prog="semdepth")
  sub = parser.add_subparsers(dest="command")
  cli.add_parser(sub)
  return parser


def test_overrides_are_collected_in_both_forms():
  args = _parser().parse_args(
    [
      "train",
      "--config",
      f"{SSEG}:size=tiny",
      "--config.seed=3",
      "--workdir",
      "/tmp/x",
      "--config.stages.seg.batch_size",
      "16",
      "--data_dir",
      "/data",
    ]
  )
  assert args.config == f"{SSEG}:size=tiny"
  assert args.workdir == "/tmp/x" and args.data_dir == "/data"
  assert args.config_overrides == ["--config.seed=3", "--config.stages.seg.batch_size=16"]
  assert args.func is cli.run


def test_unknown_plain_option_is_still_an_error(capsys):
  with pytest.raises(SystemExit):
    _parser().parse_args(["train", "--config", SSEG, "--workdir", "w", "--bogus", "1"])
  assert "--bogus" in capsys.readouterr().err


def test_unknown_override_key_exits_2(tmp_path, capsys):
  rc = main_lib.main(
    ["train", "--config", f"{SSEG}:size=tiny", "--workdir", str(tmp_path), "--config.nope=1"]
  )
  assert rc == 2
  assert "unknown config key config.nope" in capsys.readouterr().err


def test_bad_preset_argument_exits_2(tmp_path, capsys):
  rc = main_lib.main(["train", "--config", f"{SSEG}:sise=tiny", "--workdir", str(tmp_path)])
  assert rc == 2
  assert "unknown preset argument 'sise'" in capsys.readouterr().err


def test_unbuilt_manual_dataset_gives_the_build_command(tmp_path, capsys):
  data_dir = tmp_path / "tfds"
  rc = main_lib.main(
    [
      "train",
      "--config",
      f"{SSEG}:model=cnn3d_up,dataset=replica,size=tiny,steps=2",
      "--workdir",
      str(tmp_path / "w"),
      "--data_dir",
      str(data_dir),
    ]
  )
  err = capsys.readouterr().err
  assert rc == 2
  assert f"semdepth data build --dataset replica --manual_dir DIR --data_dir {data_dir}" in err
  assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.slow
def test_train_command_runs_and_resumes(tmp_path, capsys):
  data_dir = tmp_path / "tfds"
  argv = [
    "train",
    "--config",
    f"{SSEG}:model=unet,dataset=synthetic_city/tiny,size=tiny,steps=2",
    "--workdir",
    str(tmp_path / "w"),
    "--data_dir",
    str(data_dir),
    "--config.progress_bar=False",
    "--config.mesh_shape=(1, 1)",
  ]
  assert main_lib.main(argv) == 0
  out = capsys.readouterr().out
  assert "finished at step 2" in out and "miou" in out
  assert sorted(os.listdir(tmp_path / "w" / "checkpoints")) == ["2"]
  saved = json.loads((tmp_path / "w" / "config.json").read_text())
  assert saved["data_dir"] == str(data_dir) and saved["stages"]["train"]["num_steps"] == 2
  # The evaluation drew image summaries to TensorBoard (tags are stored as plain bytes in the events).
  events = b"".join(p.read_bytes() for p in (tmp_path / "w" / "tb").rglob("events.out.tfevents.*"))
  for i in range(3):
    assert f"eval/examples/{i}".encode() in events
  # Re-running continues from the workdir: more steps on top of the checkpoint.
  assert (
    main_lib.main(argv[:-2] + ["--config.mesh_shape=(1, 1)", "--config.stages.train.num_steps=3"])
    == 0
  )
  assert sorted(os.listdir(tmp_path / "w" / "checkpoints")) == ["2", "3"]
