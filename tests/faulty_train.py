"""distnn.train with a fault injected on rank 1 at its 5th step: `raise` or `kill`.

    mpirun -n 2 python tests/faulty_train.py raise --data ... (train arguments)
"""

import os
import signal
import sys

import distnn.train
from distnn.reduce import FusedAllreduce

MODE = sys.argv.pop(1)


class Faulty(FusedAllreduce):
    calls = 0

    def __call__(self, *args, **kwargs):
        Faulty.calls += 1
        if self.comm.rank == 1 and Faulty.calls == 5:
            if MODE == "raise":
                raise RuntimeError("injected failure on rank 1")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(*args, **kwargs)


distnn.train.FusedAllreduce = Faulty
sys.exit(distnn.train.main())
