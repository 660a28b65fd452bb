"""Semantic 6: envelopes on every entry, correlation through handlers, JSON logs."""

from __future__ import annotations

import io
import json
import logging

from orderflow.runtime import App, Record, correlation
from orderflow.runtime.logs import ConsoleFormatter, ContextFilter, JsonFormatter, configure_logging
from orderflow.runtime.testing import eventually, run_app


class Placed(Record, event_type="rt.corr.placed.v1"):
    order_id: str


class Packed(Record, event_type="rt.corr.packed.v1"):
    order_id: str


class Shipped(Record, event_type="rt.corr.shipped.v1"):
    order_id: str


async def test_sends_inside_a_handler_inherit_correlation_and_name_their_cause(
    redis_client, redis_url
):
    app = App("rt-corr", broker=redis_url, block_ms=50, scheduler_interval=0.05)
    placed = app.topic("rt-corr-placed", value_type=Placed)
    packed = app.topic("rt-corr-packed", value_type=Packed)
    shipped = app.topic("rt-corr-shipped", value_type=Shipped)
    seen = {}
    log_buffer = io.StringIO()
    handler = logging.StreamHandler(log_buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter("rt-corr-service"))
    logger = logging.getLogger("rt.corr.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    @app.agent(placed, group="packers")
    async def pack(stream):
        async for event in stream.events():
            seen["placed"] = event.envelope
            logger.info("packing %s", event.value.order_id)
            await packed.send(value=Packed(order_id=event.value.order_id))

    @app.agent(packed, group="shippers")
    async def ship(stream):
        async for event in stream.events():
            seen["packed"] = event.envelope
            await shipped.send(value=Shipped(order_id=event.value.order_id), delay=0.01)

    @app.agent(shipped, group="trackers")
    async def track(stream):
        async for event in stream.events():
            seen["shipped"] = event.envelope

    try:
        async with run_app(app):
            with correlation("request-42"):
                await placed.send(value=Placed(order_id="o-1"), key="o-1")
            await eventually(lambda: "shipped" in seen)
    finally:
        logger.removeHandler(handler)
    first, second, third = seen["placed"], seen["packed"], seen["shipped"]
    assert first.correlation_id == second.correlation_id == third.correlation_id == "request-42"
    assert second.causation_id == first.event_id
    assert third.causation_id == second.event_id  # also through the delayed path
    assert len({first.event_id, second.event_id, third.event_id}) == 3
    assert all(e.source == "rt-corr" for e in (first, second, third))
    [line] = [json.loads(text) for text in log_buffer.getvalue().splitlines()]
    assert line["message"] == "packing o-1"
    assert line["correlation_id"] == "request-42"
    assert line["event_id"] == first.event_id
    assert line["event_type"] == "rt.corr.placed.v1"
    assert line["service"] == "rt-corr"  # the App whose agent logged, not the handler's default
    assert line["level"] == "INFO" and line["logger"] == "rt.corr.test"


def test_configure_logging_writes_json_or_console_lines(capsys):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("svc", fmt="json", level="INFO")
        with correlation("cid-1"):
            logging.getLogger("x").warning("hello %s", "world", extra={"order_id": "o-9"})
        line = json.loads(capsys.readouterr().err.strip())
        assert line["message"] == "hello world"
        assert line["correlation_id"] == "cid-1"
        assert line["service"] == "svc" and line["order_id"] == "o-9"
        configure_logging("svc", fmt="console", level="INFO")
        assert isinstance(root.handlers[0].formatter, ConsoleFormatter)
        logging.getLogger("x").info("plain")
        assert "plain" in capsys.readouterr().err
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
