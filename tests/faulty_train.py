"""distnn.train with a fault injected on rank 1 at its 5th step: `raise` or `kill`.

    mpirun -n 2 python tests/faulty_train.py raise --data ... (train arguments)

The fault is in rank 1's backprop, so it strikes whichever reducer the run uses.
"""

import os
import signal
import sys

import distnn.train

MODE = sys.argv.pop(1)
make_reducer = distnn.train.make_reducer


def faulty_make_reducer(comm, net, optimizer, kind):
    if comm.rank == 1:
        gradient, calls = net.gradient, [0]

        def faulty_gradient(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 5:
                if MODE == "raise":
                    raise RuntimeError("injected failure on rank 1")
                os.kill(os.getpid(), signal.SIGKILL)
            return gradient(*args, **kwargs)

        net.gradient = faulty_gradient
    return make_reducer(comm, net, optimizer, kind)


distnn.train.make_reducer = faulty_make_reducer
sys.exit(distnn.train.main())
