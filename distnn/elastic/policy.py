"""The supervisor's decisions: from what it knows and what just happened, what to do.

Pure: no processes, no files, no clock. Each event carries the time it was seen
(``now``, the supervisor's monotonic clock) and what the sentinels had shown by
then; ``decide(state, event)`` returns the next state and the action to carry
out, which ``distnn.elastic.supervisor`` does. The rules:

- **Lost.** A host of the job is lost when its sentinel has ended, or has been
  silent longer than ``lost_after`` (one that has not spoken yet counts from its
  start), or when the trainer's stall watchdog names it (by the name it was given
  or its short or fully qualified form). The job is ended and launched again on
  the hosts left, from the last commit.
- **Too few.** With fewer than ``min_ranks`` ranks left the supervisor stops
  instead, with EXIT_INTERRUPTED: the checkpoint is kept for a later resume.
- **Joining.** A host new in the host file, or a lost one after ``rejoin_after``
  (its sentinel is started again then, and at most that often), joins once its
  sentinel has run for two heartbeats and speaks: a host that flickers stays
  out. The job is asked to stop (it writes the checkpoint after its step), and
  when it exits EXIT_INTERRUPTED it is launched again with the host.
- **The job's own end.** EXIT_OK: done. EXIT_INTERRUPTED not asked for,
  EXIT_USAGE, or EXIT_IOERR (its checkpoint could not be written: a relaunch
  would fail the same way until there is room): stop with that status. Any
  other status waits ``lost_after`` and a heartbeat for a host to be found
  lost (a dead host can end the job before its sentinel does); if none is,
  stop with that status: relaunching the same code on the same data would
  fail the same way.
- **A signal to the supervisor** goes on to the job as its stop signal; the
  supervisor then ends with the job's status and launches nothing again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from distnn.protocol import EXIT_INTERRUPTED, EXIT_IOERR, EXIT_OK, EXIT_USAGE

LOST, JOINED = "lost", "joined"  # the kinds of change to the job's hosts
# Why the supervisor ends (Action.why).
DONE, TOO_FEW, JOB_STATUS, SIGNALLED = "done", "too few ranks", "job status", "signalled"
STALL_WHY = "its ranks stalled the job (the trainer's watchdog)"
JOIN_WHY = "its sentinel answers"


@dataclass(frozen=True)
class Rules:
    """The supervisor's settings that decisions depend on (its command line)."""
    min_ranks: int = 1
    heartbeat: float = 0.5  # seconds between a sentinel's lines
    lost_after: float = 3.0
    rejoin_after: float = 60.0


@dataclass(frozen=True)
class Seen:
    """What a host's sentinel has shown: when it started, last spoke, and how it ended."""
    started: float
    last: float | None = None
    ended: int | None = None  # its exit status, once it has ended

    def silent_for(self, now: float) -> float:
        return now - (self.last if self.last is not None else self.started)


@dataclass(frozen=True)
class State:
    rules: Rules
    hosts: Mapping[str, int]  # every host known and its ranks (the list, the host file)
    running: Mapping[str, int] = field(default_factory=dict)  # the job's hosts
    lost: Mapping[str, float] = field(default_factory=dict)  # host -> when it was lost
    tried: Mapping[str, float] = field(default_factory=dict)  # lost host -> sentinel restarted
    joining: bool = False  # the job was asked to stop for a host to join
    signalled: bool = False  # the supervisor was asked to stop
    ended: int | None = None  # the job's status, while waiting for a host to be found lost
    wait_until: float = 0.0  # ... until then


# -- events: what happened, and when --------------------------------------------------

@dataclass(frozen=True)
class Start:
    now: float


@dataclass(frozen=True)
class Tick:
    """A look at the sentinels (and the host file, re-read: None if there is none)."""
    now: float
    sentinels: Mapping[str, Seen]
    listed: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Stalled:
    """The job's stall watchdog named these hosts as those it waits for."""
    now: float
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class JobEnded:
    now: float
    status: int
    sentinels: Mapping[str, Seen]


@dataclass(frozen=True)
class Signalled:
    now: float


Event = Start | Tick | Stalled | JobEnded | Signalled


# -- actions: what to do, in this order -----------------------------------------------

@dataclass(frozen=True)
class Change:
    kind: str  # LOST or JOINED
    hosts: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Action:
    watch: tuple[str, ...] = ()  # start a sentinel on each of these hosts (again)
    unwatch: tuple[str, ...] = ()  # stop these hosts' sentinels: they are lost
    ask_stop: bool = False  # send the job the stop signal
    end_job: bool = False  # end what is left of the job, now
    change: Change | None = None  # a change to the job's hosts, to record
    launch: Mapping[str, int] | None = None  # launch the job on these hosts
    exit: int | None = None  # then end the supervisor with this status
    why: str = ""  # ... for this reason: DONE, TOO_FEW, JOB_STATUS or SIGNALLED


def decide(state: State, event: Event) -> tuple[State, Action]:
    """The next state, and what to do about ``event``."""
    match event:
        case Start():
            return _start(state)
        case Signalled():
            return _signalled(state)
        case Stalled():
            return _stalled(state, event)
        case JobEnded():
            return _job_ended(state, event)
        case Tick():
            return _tick(state, event)
    raise TypeError(f"not an event: {event!r}")


def ranks(hosts: Mapping[str, int]) -> int:
    return sum(hosts.values())


def same_host(a: str, b: str) -> bool:
    """Whether two names are one host: equal, or one the other's first label ('a', 'a.b')."""
    return a == b or a.split(".")[0] == b or b.split(".")[0] == a


def _start(state: State) -> tuple[State, Action]:
    if ranks(state.hosts) < state.rules.min_ranks:
        return replace(state, running=dict(state.hosts)), Action(exit=EXIT_INTERRUPTED,
                                                                 why=TOO_FEW)
    return _launched(state, dict(state.hosts)), Action(watch=tuple(state.hosts),
                                                       launch=dict(state.hosts))


def _launched(state: State, hosts: Mapping[str, int]) -> State:
    return replace(state, running=hosts, joining=False, ended=None)


def _signalled(state: State) -> tuple[State, Action]:
    state = replace(state, signalled=True)
    if state.ended is not None:  # the job has ended: its status is the run's
        return state, Action(exit=state.ended, why=SIGNALLED)
    return state, Action(ask_stop=bool(state.running))


def _stalled(state: State, event: Stalled) -> tuple[State, Action]:
    named = [h for h in state.running if any(same_host(n, h) for n in event.hosts)]
    if state.signalled or not named:
        return state, Action()
    return _lose(state, dict.fromkeys(named, STALL_WHY), event.now, end_job=state.ended is None)


def _gone(state: State, sentinels: Mapping[str, Seen], now: float) -> dict[str, str]:
    """The job's hosts whose sentinels say they are lost, and why."""
    gone = {}
    for host in state.running:
        seen = sentinels.get(host)
        if seen is not None and seen.ended is not None:
            gone[host] = f"its sentinel ended (status {seen.ended})"
        elif seen is not None and seen.silent_for(now) > state.rules.lost_after:
            gone[host] = f"no heartbeat for {seen.silent_for(now):.1f} s"
    return gone


def _lose(state: State, gone: Mapping[str, str], now: float,
          end_job: bool) -> tuple[State, Action]:
    """Drop the hosts gone (ending the job if it runs), and launch it again on the others,
    or stop."""
    left = {h: n for h, n in state.running.items() if h not in gone}
    state = replace(state, lost={**state.lost, **{h: now for h in gone}})
    change = Change(LOST, tuple(gone), "; ".join(f"{h}: {why}" for h, why in gone.items()))
    action = Action(unwatch=tuple(gone), end_job=end_job, change=change)
    if ranks(left) < state.rules.min_ranks:
        return replace(state, running=left), replace(
            action, exit=EXIT_INTERRUPTED, why=TOO_FEW)
    return _launched(state, left), replace(action, launch=left)


def _ready(state: State, sentinels: Mapping[str, Seen], now: float) -> tuple[str, ...]:
    """Hosts that may join: not in the job, their sentinel running for two heartbeats and
    speaking, and if lost, lost ``rejoin_after`` ago."""
    rules, ready = state.rules, []
    for host in state.hosts:
        seen = sentinels.get(host)
        if host in state.running or seen is None or seen.ended is not None:
            continue
        if host in state.lost and now - state.lost[host] < rules.rejoin_after:
            continue
        if seen.last is not None and now - seen.started > 2 * rules.heartbeat \
                and seen.silent_for(now) < rules.lost_after:
            ready.append(host)
    return tuple(ready)


def _retry(state: State, sentinels: Mapping[str, Seen], now: float) -> tuple[str, ...]:
    """Lost hosts whose sentinel to start again: it has ended, and the host was lost, or
    last tried, ``rejoin_after`` ago."""
    retry = []
    for host, when in state.lost.items():
        seen = sentinels.get(host)
        if (seen is None or seen.ended is not None) \
                and now - max(when, state.tried.get(host, when)) >= state.rules.rejoin_after:
            retry.append(host)
    return tuple(retry)


def _tick(state: State, event: Tick) -> tuple[State, Action]:
    now, sentinels = event.now, event.sentinels
    new = tuple(h for h in (event.listed or {}) if h not in state.hosts)
    if new:  # added to the host file: watch them
        state = replace(state, hosts={**state.hosts, **{h: event.listed[h] for h in new}})
    if state.signalled:
        return state, Action()
    gone = _gone(state, sentinels, now)
    if gone:
        state, action = _lose(state, gone, now, end_job=state.ended is None)
        return state, replace(action, watch=new)
    if state.ended is not None:  # the job has ended, and no host is lost
        if now >= state.wait_until:
            return state, Action(watch=new, exit=state.ended, why=JOB_STATUS)
        return state, Action(watch=new)
    retry = _retry(state, sentinels, now)
    state = replace(state, tried={**state.tried, **{h: now for h in retry}})
    ask = not state.joining and bool(_ready(state, sentinels, now))
    return replace(state, joining=state.joining or ask), Action(watch=new + retry,
                                                                ask_stop=ask)


def _job_ended(state: State, event: JobEnded) -> tuple[State, Action]:
    now, status = event.now, event.status
    if state.signalled:
        return state, Action(exit=status, why=SIGNALLED)
    if status == EXIT_OK:
        return state, Action(exit=EXIT_OK, why=DONE)
    gone = _gone(state, event.sentinels, now)
    if gone:
        return _lose(state, gone, now, end_job=False)
    if status == EXIT_INTERRUPTED and state.joining:  # it stopped for hosts to join
        ready = _ready(state, event.sentinels, now)
        hosts = {**state.running, **{h: state.hosts[h] for h in ready}}
        state = replace(state, lost={h: t for h, t in state.lost.items() if h not in ready},
                        tried={h: t for h, t in state.tried.items() if h not in ready})
        change = Change(JOINED, ready, JOIN_WHY) if ready else None
        return _launched(state, hosts), Action(change=change, launch=hosts)
    if status in (EXIT_INTERRUPTED, EXIT_USAGE, EXIT_IOERR):
        return state, Action(exit=status, why=JOB_STATUS)
    rules = state.rules
    return replace(state, ended=status,
                   wait_until=now + rules.lost_after + rules.heartbeat), Action()
