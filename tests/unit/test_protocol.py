"""What the processes tell one another (distnn.protocol): statuses, event lines, who prints them."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from distnn import protocol
from distnn.comm import SerialComm
from distnn.config import parse_args
from distnn.train import run
from tests.support.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[2]


def test_an_event_line_reads_back_and_no_other_line_is_taken_for_one():
    line = protocol.format_event(protocol.POSITION, epoch=2, step=7)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert protocol.parse_event(line) == {"event": "position", "epoch": 2, "step": 7}
    for other in ["distnn: resuming runs/c.h5 at epoch 1, step 4\n",
                  "distnn.event not json\n", 'distnn.event ["a list"]\n',
                  ' distnn.event {"event": "position"}\n']:
        assert protocol.parse_event(other) is None, other


def test_the_launch_scripts_read_the_exit_statuses_from_the_protocol():
    shell = subprocess.run(
        ["bash", "-c", '. launch/mpi.sh && distnn_statuses python && '
                       'echo "$DISTNN_EXIT_INTERRUPTED $DISTNN_EXIT_USAGE"'],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert shell.stdout.split() == [str(protocol.EXIT_INTERRUPTED), str(protocol.EXIT_USAGE)]
    broken = subprocess.run(["bash", "-c", ". launch/mpi.sh && distnn_statuses /bin/false"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0 and "cannot import distnn" in broken.stderr


def events(text: str) -> list[dict]:
    return [e for e in map(protocol.parse_event, text.splitlines(keepends=True)) if e]


@pytest.mark.parametrize("supervised", [True, False])
def test_one_process_reports_its_position_only_to_a_supervisor(supervised, tmp_path, monkeypatch,
                                                               capsys):
    """A run that an elastic supervisor has shrunk to one rank has no stall watch (that
    needs two ranks), and still says where it is."""
    if supervised:
        monkeypatch.setenv(protocol.EVENTS_VARIABLE, "1")
        monkeypatch.setenv(protocol.REPORT_VARIABLE, "0.001")
    data = make_dataset(tmp_path / "d.h5", n_train=64, n_test=16)
    cfg, given = parse_args(["--data", str(data), "--checkpoint", str(tmp_path / "c.h5"),
                             "--layers", "16,8,4", "--batch-size", "16", "--epochs", "2",
                             "--no-progress"])
    assert run(cfg, given, SerialComm()) == 0
    seen = events(capsys.readouterr().out)
    if not supervised:
        assert seen == []
        return
    assert seen[0] == {"event": "training", "epoch": 0, "step": 0, "resumed": False}
    positions = [(e["epoch"], e["step"]) for e in seen if e["event"] == "position"]
    assert positions and positions == sorted(set(positions))  # each new place once, in order
    assert positions[-1] == (1, 3)  # the last step run, reported as the run ends


def test_the_supervisor_sends_only_a_signal_the_trainer_takes_as_a_stop():
    from distnn.elastic.__main__ import build_parser

    parser = build_parser()
    assert parser.parse_args([]).stop_signal == protocol.STOP_SIGNALS[0]
    assert parser.parse_args(["--stop-signal", "usr1"]).stop_signal == signal.SIGUSR1
    with pytest.raises(SystemExit):
        parser.parse_args(["--stop-signal", "HUP"])  # the trainer would just die of it
