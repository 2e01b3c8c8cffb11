"""``python -m distnn.elastic``: the supervisor's command line."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys

import distnn.elastic
from distnn.config import ConfigError
from distnn.elastic.launch import DEFAULT_LAUNCHER, default_launcher
from distnn.elastic.supervisor import Supervisor
from distnn.protocol import EXIT_USAGE, STOP_SIGNALS


def _stop_signal(name: str) -> signal.Signals:
    """A stop signal by name (TERM, SIGTERM): one the trainer takes as a stop request."""
    wanted = name.upper().removeprefix("SIG")
    for sig in STOP_SIGNALS:
        if sig.name == f"SIG{wanted}":
            return sig
    raise argparse.ArgumentTypeError(
        f"{name!r} is not a stop signal of distnn.train: one of "
        f"{', '.join(s.name[3:] for s in STOP_SIGNALS)}")


def build_parser() -> argparse.ArgumentParser:
    doc = distnn.elastic.__doc__
    p = argparse.ArgumentParser(
        prog="python -m distnn.elastic", description=doc.splitlines()[0],
        usage="%(prog)s [--hosts H:N,... | --hostfile PATH] [options] -- [distnn.train "
              "arguments]",
        epilog=doc.split("\n", 2)[2].rsplit("\nThe modules:", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--hosts", metavar="H:N,...",
                       help="hosts and their ranks, a:2,b:2 (default, inside a Slurm "
                            "allocation: its nodes and tasks)")
    where.add_argument("--hostfile", metavar="PATH",
                       help="one host[:ranks] a line; read again as the run goes, so a host "
                            "added to it joins")
    p.add_argument("--min-ranks", type=int, default=1, dest="min_ranks", metavar="N",
                   help="stop, keeping the checkpoint, when fewer ranks are left (default 1)")
    p.add_argument("--launcher", default=default_launcher(),
                   help="how to start processes on hosts: {hosts} becomes a:2,b:2, {ranks} "
                        "their number, {nodelist} a,b, {nodes} 2, {per_node} the most ranks "
                        f"on one (default: MPICH's '{DEFAULT_LAUNCHER}'; inside a Slurm "
                        "allocation, srun --no-kill steps on the nodes left, with --mpi="
                        "$SRUN_MPI if set; for Open MPI, not verified: 'mpirun --host "
                        "{hosts} -n {ranks}' with --stop-signal USR1)")
    p.add_argument("--stop-signal", type=_stop_signal, default=STOP_SIGNALS[0],
                   dest="stop_signal", metavar="SIG",
                   help="what the launcher passes on to the ranks as a stop request: "
                        f"{', '.join(s.name[3:] for s in STOP_SIGNALS)} "
                        f"({STOP_SIGNALS[0].name[3:]})")
    p.add_argument("--heartbeat", type=float, default=0.5, metavar="SECONDS",
                   help="each host's sentinel speaks this often (0.5)")
    p.add_argument("--lost-after", type=float, default=3.0, dest="lost_after",
                   metavar="SECONDS", help="a host silent this long is lost (3)")
    p.add_argument("--rejoin-after", type=float, default=60.0, dest="rejoin_after",
                   metavar="SECONDS",
                   help="a lost host is tried again after this long, then at most this often "
                        "(60)")
    p.add_argument("--stall-timeout", type=float, default=30.0, dest="stall_timeout",
                   metavar="SECONDS", help="the trainer's own watchdog, behind the sentinels "
                                           "(30)")
    p.add_argument("--metrics", metavar="PATH",
                   help="the supervisor's own metrics file, one membership record a change "
                        "(default: beside the training's --metrics, m.jsonl -> "
                        "m.elastic.jsonl; none if it has none)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) \
        if "--" in argv else (argv, [])
    args = build_parser().parse_args(ours)
    try:
        supervisor = Supervisor(args, train_args)
    except (OSError, ValueError, ConfigError, subprocess.CalledProcessError) as err:
        print(f"distnn.elastic: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if not supervisor.state.hosts:
        print("distnn.elastic: error: no hosts", file=sys.stderr)
        return EXIT_USAGE
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
