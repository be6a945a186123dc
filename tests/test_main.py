import subprocess
import sys

import pytest

from semdepth_jax import main


def test_help_lists_every_subcommand(capsys):
  with pytest.raises(SystemExit) as e:
    main.main(["--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  for name in ("data", "train", "evaluate", "predict", "score", "quickstart"):
    assert name in out


def test_console_script_help_runs():
  out = subprocess.run(
    [sys.executable, "-m", "semdepth_jax.main", "--help"],
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  assert "semdepth" in out and "score" in out


def test_unknown_command_is_an_error():
  with pytest.raises(SystemExit) as e:
    main.main(["no-such-command"])
  assert e.value.code == 2
