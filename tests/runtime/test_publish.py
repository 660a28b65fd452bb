"""Publishing through the runtime: once per event id, in one round trip, capped by MAXLEN."""

from __future__ import annotations

import pytest

from orderflow.runtime import App, Envelope, NotReplicated, Record
from orderflow.runtime.publish import published_marker_key
from orderflow.runtime.pytest_plugin import cluster_mode


class Note(Record, event_type="rt.publish.note.v1"):
    n: int


async def test_send_envelope_once_appends_each_event_id_once(redis_client, redis_url):
    app = App("rt-publish", broker=redis_url)
    topic = app.topic("rt-publish-once", value_type=Note)
    envelope = topic.envelope(Note(n=1))
    first = await topic.send_envelope(envelope, once=True)
    again = await topic.send_envelope(envelope, once=True)
    plain = await topic.send_envelope(envelope)  # without once: appended again, same id
    assert first is not None and again is None and plain is not None
    entries = await redis_client.xrange("rt-publish-once")
    assert [fields[b"event_id"].decode() for _, fields in entries] == [envelope.event_id] * 2
    ttl = await redis_client.ttl(published_marker_key("rt-publish-once", envelope.event_id))
    assert 0 < ttl <= app.dedupe_ttl
    with pytest.raises(ValueError):
        await topic.send_envelope(envelope, once=True, delay=1.0)
    await app.stop()


@pytest.mark.skipif(cluster_mode(), reason="the cluster's masters have replicas: test_cluster.py")
async def test_send_with_replicas_and_none_there_says_not_replicated_and_keeps_the_entry(
    redis_client, redis_url
):
    app = App("rt-publish-replicas", broker=redis_url)
    topic = app.topic("rt-publish-replicas", value_type=Note)
    with pytest.raises(NotReplicated) as caught:
        await topic.send(value=Note(n=1), replicas=1, replicas_timeout_ms=50)
    assert (caught.value.wanted, caught.value.confirmed) == (1, 0)
    [(entry_id, _)] = await redis_client.xrange("rt-publish-replicas")
    assert caught.value.entry_id == entry_id.decode()  # appended, and not undone
    with pytest.raises(ValueError):
        await topic.send(value=Note(n=2), replicas=1, delay=1.0)
    await app.stop()


async def test_send_envelopes_caps_each_topic_at_its_maxlen(redis_client, redis_url):
    app = App("rt-publish-many", broker=redis_url, stream_maxlen=50_000)
    capped = app.topic("rt-publish-capped", value_type=Note, maxlen=100)
    default = app.topic("rt-publish-default", value_type=Note)
    for start in range(0, 2000, 100):
        items = [(capped, capped.envelope(Note(n=n))) for n in range(start, start + 100)]
        items += [(default, default.envelope(Note(n=n))) for n in range(start, start + 100)]
        results = await app.send_envelopes(items, once=True)
        assert all(results) and len(results) == 200
    assert 100 <= await redis_client.xlen("rt-publish-capped") < 2000  # MAXLEN ~ trims nodes
    assert await redis_client.xlen("rt-publish-default") == 2000
    replay = [(capped, Envelope.model_validate(items[0][1].model_dump()))]
    assert await app.send_envelopes(replay, once=True) == [None]  # already appended
    await app.stop()
