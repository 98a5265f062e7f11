"""What `posezoo` says when it stops: an error raised on purpose is its message and exit 2, any other
exception is a bug (exit 3, one line, the traceback in a file); the frameworks' log lines and
warnings show only with --verbose."""
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
import tempfile

import pytest

import posezoo.scripts.cli as cli
from posezoo.errors import PosezooError, RunError
from posezoo.scripts.cli import EXIT_BAD_INPUT, EXIT_BUG, main


def test_an_error_raised_on_purpose_is_its_message_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("POSEZOO_CALIBRATION_IMAGES", raising=False)
    assert main(["build", "efficientpose-rt-lite", "--out", str(tmp_path / "zoo")]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == ("posezoo build: error: pass --calibration-images DIR (real photos of people, "
                                       "optionally with COCO-format annotations) or set POSEZOO_CALIBRATION_IMAGES\n")


def test_every_error_class_of_posezoo_is_a_posezoo_error():
    classes = []
    for package in ("posezoo", "posezoo.converters", "posezoo.recipes", "posezoo.scripts"):
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            if not info.name.endswith("__main__"):  # importing it would run the command
                module = importlib.import_module(info.name)
                classes += [c for _, c in inspect.getmembers(module, inspect.isclass)
                            if issubclass(c, Exception) and c.__module__ == info.name]
    assert len(classes) > 15 and [c for c in classes if not issubclass(c, PosezooError)] == []
    assert issubclass(RunError, RuntimeError)  # the parity gate rejects an artifact the runtime cannot run


def test_an_unexpected_exception_is_a_bug_with_its_traceback_in_a_file(tmp_path, monkeypatch, capsys):
    def broken(args):
        return 1 / 0

    monkeypatch.setattr(cli, "cmd_list", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["list", "--json"]) == EXIT_BUG
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("posezoo list: a bug in posezoo (ZeroDivisionError: division by zero); the full "
                          "traceback is in ")
    (report,) = tmp_path.glob("posezoo-crash-*.txt")
    assert str(report) in err
    text = report.read_text()
    assert text.startswith("posezoo list --json\n")
    assert "Traceback (most recent call last)" in text and "1 / 0" in text and "ZeroDivisionError" in text


def test_verbose_goes_before_or_after_the_command():
    p = cli.parser()
    assert p.parse_args(["--verbose", "list"]).verbose and p.parse_args(["list", "--verbose"]).verbose
    assert p.parse_args(["bench", "m.json", "--verbose"]).verbose and not p.parse_args(["list"]).verbose


CHATTER = """
import logging, os, sys, warnings
from posezoo.converters import quiet
quiet.configure(sys.argv[1:] == ["--verbose"])
print(*(f"{k}={os.environ.get(k)}" for k in ("TF_CPP_MIN_LOG_LEVEL", "POSEZOO_VERBOSE")))
logging.getLogger("absl").warning("absl chatter")
logging.warning("root chatter")  # onnxruntime's quantizer logs on the root logger
warnings.warn_explicit("tensorflow chatter", UserWarning, "interpreter.py", 1, module="tensorflow.lite.python")
warnings.warn_explicit("posezoo's own warning", UserWarning, "calibration.py", 1, module="posezoo.converters.calibration")
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_the_frameworks_chatter_shows_only_when_verbose(verbose):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "POSEZOO_VERBOSE")}
    run = subprocess.run([sys.executable, "-c", CHATTER, *(["--verbose"] if verbose else [])], capture_output=True,
                         text=True, env=env, check=True)
    assert run.stdout.split() == (["TF_CPP_MIN_LOG_LEVEL=None", "POSEZOO_VERBOSE=1"] if verbose
                                  else ["TF_CPP_MIN_LOG_LEVEL=2", "POSEZOO_VERBOSE=None"])
    assert "posezoo's own warning" in run.stderr
    for chatter in ("absl chatter", "root chatter", "tensorflow chatter"):
        assert (chatter in run.stderr) == verbose, chatter
