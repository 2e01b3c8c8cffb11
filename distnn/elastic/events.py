"""What the supervisor hears from the job: the trainer's event lines, as facts.

The trainer, told to by ``distnn.protocol.EVENTS_VARIABLE``, prints event lines
among its output (``distnn.protocol.format_event``). ``hear`` splits one line
of the job's output into the text for people, which the supervisor passes on
to its own output, and the fact the event line in it carries: a fact for each
event the supervisor uses, ``IGNORED`` for any other event line (or one it
cannot read: neither is for people), None if there is none. An event line may
come after a fragment of other output that had no newline yet (a launcher
that forwards several processes' output into one stream): the fragment is
passed on, the event read. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distnn import protocol


@dataclass(frozen=True)
class Position:
    """Where rank 0's loop is: the next step it runs (both from 0)."""
    epoch: int
    step: int


@dataclass(frozen=True)
class Training:
    """The loop begins: at the checkpoint's position (``resumed``), or at the start."""
    epoch: int
    step: int
    resumed: bool


@dataclass(frozen=True)
class Stall:
    """The stall watchdog's verdict: the hosts of the ranks the others wait for."""
    hosts: tuple[str, ...]
    waiting: tuple[int, ...] = ()


IGNORED = object()  # an event line that is not for the supervisor, or is malformed
Fact = Position | Training | Stall


def hear(line: str) -> tuple[str, Fact | object | None]:
    """The text for people in ``line``, and the fact of the event line in it, if any."""
    text, prefix, rest = line.partition(protocol.PREFIX)
    if not prefix:
        return line, None
    text = text + "\n" if text.strip() else ""
    event = protocol.parse_event(prefix + rest)
    if event is None:
        return text, IGNORED
    try:
        return text, _fact(event)
    except (KeyError, TypeError, ValueError):
        return text, IGNORED


def _fact(event: dict[str, Any]) -> Fact | object:
    kind = event["event"]
    if kind == protocol.POSITION:
        return Position(_count(event["epoch"]), _count(event["step"]))
    if kind == protocol.TRAINING:
        if not isinstance(event["resumed"], bool):
            raise TypeError("resumed")
        return Training(_count(event["epoch"]), _count(event["step"]), event["resumed"])
    if kind == protocol.STALLED:
        hosts = [culprit["host"] for culprit in event["culprits"]]
        if not all(isinstance(h, str) and h for h in hosts):
            raise TypeError("host")
        return Stall(tuple(dict.fromkeys(hosts)),
                     tuple(_count(r) for r in event.get("waiting", ())))
    return IGNORED


def _count(value: Any) -> int:
    """A step or epoch number: an int, not below 0 (bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value
