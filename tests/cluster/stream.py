"""The rate of a plain TCP stream between two stand-in hosts: calibrates a link.

    python3 tests/cluster/stream.py dnn1 dnn2 [MiB]     # Gbit/s from dnn1 to dnn2

The receiver reads until the sender closes, then answers one byte; the sender
times from its first byte to that answer. A token bucket (tests/cluster/link.sh)
lets its burst through at once, so the stream is long (default 256 MiB) next to
any burst. One direction: two Python streams at once, each way, would share a
host's one CPU between a sender and a receiver process, where an Allreduce's
one process per host sends and receives.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

ON_HOST = str(Path(__file__).resolve().parent / "on-host")
PORT = 5201


def address(host: str) -> str:
    for line in Path("/run/distnn-cluster/hosts").read_text().splitlines():
        name, addr, _ = line.split()
        if host in (name, addr):
            return addr
    raise SystemExit(f"stream.py: no stand-in host {host!r} (bash tests/cluster/up.sh)")


def receive(port: int) -> None:
    with socket.create_server(("0.0.0.0", port)) as server:
        print("ready", flush=True)
        conn, _ = server.accept()
        with conn:
            while conn.recv(1 << 20):
                pass
            conn.sendall(b"k")


def send(addr: str, port: int, mib: int) -> None:
    chunk = b"\0" * (1 << 20)
    with socket.create_connection((addr, port), timeout=60) as conn:
        t0 = time.perf_counter()
        for _ in range(mib):
            conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)
        seconds = time.perf_counter() - t0
    print(f"{mib * 8 * 2**20 / seconds / 1e9:.3f}")


def streams(pairs: list[tuple[str, str]], mib: int) -> list[float]:
    """Gbit/s of one stream per (sender, receiver) pair, all running at once."""
    me = f"{sys.executable} {Path(__file__).resolve()}"
    ports = [PORT + i for i in range(len(pairs))]
    servers = [subprocess.Popen(["bash", ON_HOST, to, f"{me} --receive {port}"],
                                stdout=subprocess.PIPE, text=True)
               for (_, to), port in zip(pairs, ports)]
    try:
        for server in servers:
            assert server.stdout.readline().strip() == "ready"
        senders = [subprocess.Popen(["bash", ON_HOST, frm,
                                     f"{me} --send {address(to)} {port} {mib}"],
                                    stdout=subprocess.PIPE, text=True)
                   for (frm, to), port in zip(pairs, ports)]
        return [float(sender.communicate(timeout=600)[0]) for sender in senders]
    finally:
        for server in servers:
            server.wait(timeout=60)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--receive"]:
        return receive(int(argv[1]))
    if argv[:1] == ["--send"]:
        return send(argv[1], int(argv[2]), int(argv[3]))
    sender, receiver = argv[0], argv[1]
    mib = int(argv[2]) if len(argv) > 2 else 256
    rate, = streams([(sender, receiver)], mib)
    print(f"{sender} -> {receiver}: {rate:.3f} Gbit/s ({mib} MiB, one TCP stream)")


if __name__ == "__main__":
    main(sys.argv[1:])
