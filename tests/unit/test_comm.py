"""What comm.py does outside MPI: waiting for a launcher to read a rank's output."""

from __future__ import annotations

import os
import socket
import threading
import time

from distnn.comm import _unread, drain_output


def test_unread_counts_what_the_reader_has_not_taken(tmp_path):
    r, w = os.pipe()
    a, b = socket.socketpair()
    with open(tmp_path / "f", "wb") as file:
        try:
            os.write(w, b"x" * 100)
            a.send(b"y" * 100)
            file.write(b"z" * 100)
            file.flush()
            assert _unread(w) == 100  # a pipe, from the writer's end
            assert _unread(a.fileno()) > 0  # a socket: bytes the peer has not received
            assert _unread(file.fileno()) == 0  # a file is written when write returns
            os.read(r, 60)
            b.recv(100)
            assert _unread(w) == 40
            assert _unread(a.fileno()) == 0
        finally:
            for fd in (r, w):
                os.close(fd)
            a.close()
            b.close()


def test_drain_waits_for_the_reader_and_no_longer():
    r, w = os.pipe()
    try:
        os.write(w, b"the line that says why the job died\n")
        taken = []

        def launcher():  # reads the pipe a little later, as a busy proxy would
            time.sleep(0.3)
            taken.append(time.monotonic())  # before the read: drain cannot return earlier
            os.read(r, 1000)

        reader = threading.Thread(target=launcher)
        reader.start()
        t0 = time.monotonic()
        drain_output(timeout=10, fds=(w,))
        returned = time.monotonic()
        reader.join()
        assert taken and taken[0] <= returned  # it returned only once the line was read
        assert returned - t0 < 5  # ... and soon after
        os.write(w, b"nobody reads this")
        t0 = time.monotonic()
        drain_output(timeout=0.2, fds=(w,))  # no reader: gives up at the timeout
        assert 0.2 <= time.monotonic() - t0 < 2
    finally:
        os.close(r)
        os.close(w)
