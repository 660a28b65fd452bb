"""``orderflow seed`` and ``orderflow refill`` against a real SQLite file; ``--help`` texts."""

from __future__ import annotations

import asyncio

import pytest

from orderflow.agents.cli import main
from orderflow.models.menu import DEMO_MENU
from orderflow.models.store import open_store


async def stocks(store_url: str) -> dict[str, int]:
    store = await open_store(store_url)
    try:
        return {item.id: item.stock for item in await store.list_menu()}
    finally:
        await store.close()


def test_seed_is_idempotent(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seed", "--store-url", store_url]) == 0
    assert f"seeded {len(DEMO_MENU)} new item(s)" in capsys.readouterr().out
    assert main(["seed", "--store-url", store_url]) == 0
    assert f"seeded 0 new item(s); the menu has {len(DEMO_MENU)}" in capsys.readouterr().out
    assert len(DEMO_MENU) >= 12


async def test_refill_restores_seed_levels_or_sets_a_level(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The CLI runs its own event loop: call it from a worker thread of this test's loop.
    assert await asyncio.to_thread(main, ["seed", "--store-url", store_url]) == 0
    store = await open_store(store_url)
    try:
        await store.set_stock("margherita", 0)
    finally:
        await store.close()

    assert await asyncio.to_thread(main, ["refill", "--stock", "3", "--store-url", store_url]) == 0
    assert set((await stocks(store_url)).values()) == {3}
    assert await asyncio.to_thread(main, ["refill", "--store-url", store_url]) == 0
    assert await stocks(store_url) == {item.id: item.stock for item in DEMO_MENU}
    assert "restocked" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["demo", "seed", "refill"])
def test_commands_explain_themselves(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"orderflow {command}" in text
    assert len(text.splitlines()) >= 5


def test_refill_rejects_negative_stock(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["refill", "--stock", "-1"])
    assert exit_info.value.code == 2
    assert "stock must be >= 0" in capsys.readouterr().err
