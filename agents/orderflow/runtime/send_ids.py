"""Deterministic event ids for sends made while handling an input.

Why: delivery is at-least-once, so a handler can run more than once for one input
(it raised and is retried, or its process died before the ack). Each run sends its
events again; with random ids downstream dedupe could not tell the copies apart
(5 deliveries -> 5 "different" events). So a send made while handling an input gets
an id *derived* from what is being handled:

    uuid5(NAMESPACE, "<group>/<agent>\\n<input event id>[,<input event id>...]\\n<ordinal>")

* the inputs: the event being handled, or for ``stream.take(n)`` the ids of the list
  in the order handed over;
* ``<group>/<agent>`` tells two agents (or two services) reacting to the same input
  apart;
* the ordinal counts the sends of this handling: 0 for the first, 1 for the second...

A re-run handler that makes the same sends in the same order therefore re-sends the
*same* ids, and every consumer's dedupe drops the copies. With ``concurrency=N`` an
input is handled by exactly one of the N bodies, which counts its own sends, so the
rule is the same. Sends with no input being handled (timers, scripts, HTTP requests,
``with correlation(...)`` blocks) keep random ids.

The limit: the rule identifies a send by its position. A handler whose sends differ
from run to run (it reads a clock or a random number, or external state that changed,
to decide what or how much to send) gets ids that name different events across runs;
a ``take(n)`` list re-formed differently on retry (its events retried separately) too.
A task spawned from a handler inherits its scope: wrap it in ``correlation(...)`` if
it outlives the event, or its sends are numbered by whatever the stream holds then.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

# Fixed for good: changing it would change every derived id (and defeat dedupe of
# re-sends across an upgrade).
NAMESPACE = uuid.UUID("6f0e1c8e-3d4b-5c1a-9a51-00de0f100000")


def derived_event_id(handler: str, inputs: Sequence[str], ordinal: int) -> str:
    """The id of send number ``ordinal`` made by ``handler`` while handling ``inputs``."""
    return str(uuid.uuid5(NAMESPACE, f"{handler}\n{','.join(inputs)}\n{ordinal}"))
