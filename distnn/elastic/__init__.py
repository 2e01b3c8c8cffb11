"""An elastic run: a supervisor that goes on without a lost host, and takes it back.

    python -m distnn.elastic --hosts a:2,b:2 --min-ranks 2 -- --epochs 30 --dtype float64
    python -m distnn.elastic --hostfile hosts.txt -- --epochs 30      # re-read as it runs

It launches ``distnn.train --resume`` on the hosts' slots with the MPI's
launcher, and watches each host through a sentinel of its own: a small
process started on that host with the same launcher, which prints a line
every ``--heartbeat`` seconds. A host whose sentinel ends, or is silent for
``--lost-after`` seconds (its processes dead or stopped, or its link down), is
lost, and so is one whose ranks the trainer's stall watchdog names: the
supervisor ends what is left of the job, drops the host and launches again on
the others, from the last commit of the checkpoint (``--commit-every``). The
run's batches and draws do not depend on the number of ranks
(``distnn.data.order``, ``distnn.noise``), so it ends with the parameters it
would have had without the failure, to rounding: a lost host costs only time.
Below ``--min-ranks`` it stops instead, and the checkpoint is kept for a later
resume (exit status 75).

A host that comes back (a lost one whose sentinel runs again after
``--rejoin-after`` seconds) or is added to ``--hostfile`` joins at a commit
boundary: the supervisor asks the job to stop (its stop signal: the trainer
writes the checkpoint after its step), and launches it again with the host.

A job that ends by itself ends the run with its status, unless a host was lost
with it. A stop signal to the supervisor (TERM, INT, USR1) goes on to the job,
and the run ends with the job's status.

Every change is one line on stderr and one record (``"event": "membership"``)
in the supervisor's own metrics file (``--metrics``; by default beside the
training's ``--metrics``, runs/m.jsonl -> runs/m.elastic.jsonl, and none if
the training has none): the host, where the run was, the commit it went on
from, the steps redone, and how long the recovery took.

The modules: ``hosts`` (host lists, sentinels), ``launch`` (launcher commands,
process groups, Slurm steps), ``policy`` (the decisions, pure), ``events`` (the
trainer's event lines), ``records`` (console lines, metrics), ``supervisor``
(the loop), ``__main__`` (the command line).
"""

from distnn.elastic.hosts import parse_hosts, slurm_hosts
from distnn.elastic.policy import decide

__all__ = ["decide", "parse_hosts", "slurm_hosts"]
