"""distnn.train with a fault injected on rank 1 at its 5th step: `raise`, `kill`, `sleep`, `stop`.

    mpirun -n 2 python tests/support/faulty_train.py raise --data ... (train arguments)

raise: an exception; kill: SIGKILL; sleep: the step never ends (a hang in the
step itself); stop: SIGSTOP (the whole process stands still, its threads too).

The fault is in rank 1's backprop, so it strikes whichever reducer the run uses.
"""

import os
import signal
import sys
import time

import distnn.train

MODE = sys.argv.pop(1)
make_reducer = distnn.train.make_reducer


def faulty_make_reducer(comm, net, optimizer, kind):
    if comm.rank == 1:
        gradient, calls = net.gradient, [0]

        def faulty_gradient(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 5:
                print(f"fault: {MODE} on rank 1", file=sys.stderr, flush=True)
                if MODE == "raise":
                    raise RuntimeError("injected failure on rank 1")
                if MODE == "sleep":
                    time.sleep(10**6)
                os.kill(os.getpid(), signal.SIGSTOP if MODE == "stop" else signal.SIGKILL)
            return gradient(*args, **kwargs)

        net.gradient = faulty_gradient
    return make_reducer(comm, net, optimizer, kind)


distnn.train.make_reducer = faulty_make_reducer
sys.exit(distnn.train.main())
