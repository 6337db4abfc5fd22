"""The shop app on Beanie (async, on pymongo's AsyncMongoClient) through Argon, on main
then on a branch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import suppress
from typing import Annotated, Any

import pytest
from beanie import Document, Indexed, Link, SortDirection, UpdateResponse, init_beanie
from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.errors import DuplicateKeyError
from pymongo.results import UpdateResult

from ..processes import Process
from ..stacks import own_stack
from .scenario import (
    ABORTED_ITEMS,
    COMMITTED_ITEMS,
    NEW_ORDERS,
    POSITIONAL_ORDER,
    SEED_ORDERS,
    SEED_USERS,
    Line,
    Status,
    check_app,
    check_positional_update,
    email,
    renamed,
    total,
)

DB = "appdb_bn"
BRANCH = "bn-feature"

AsyncClient = AsyncMongoClient[dict[str, Any]]


class Item(BaseModel):
    sku: str
    qty: int = Field(ge=1)
    price: int = Field(ge=0)


class User(Document):
    email: Annotated[str, Indexed(unique=True)]
    name: str
    visits: int = 0
    orders_placed: int = 0

    class Settings:
        name = "users"


class Order(Document):
    number: Annotated[int, Indexed(unique=True)]
    user: Link[User]
    items: list[Item]
    status: Status
    total: int

    class Settings:
        name = "orders"
        indexes = [  # noqa: RUF012 (Beanie reads this class attribute)
            IndexModel([("user.$id", ASCENDING), ("number", DESCENDING)]),
            IndexModel([("status", ASCENDING)]),
        ]


class Abort(Exception):
    """Raised by the app to abandon a transaction."""


def _new_order(number: int, user: User, status: Status, lines: list[Line]) -> Order:
    items = [Item(sku=s, qty=q, price=p) for s, q, p in lines]
    return Order(number=number, user=user, status=status, items=items, total=total(lines))


async def _next_number() -> int:
    last = await Order.find_all().sort("-number").first_or_none()
    return 1 if last is None else last.number + 1


async def _checkout(
    client: AsyncClient, user: User, number: int, lines: list[Line], abort: bool
) -> int:
    """Place a paid order and count it on its user, in one transaction; return the
    user's count as the transaction reads it."""
    async with client.start_session() as s, await s.start_transaction():
        await _new_order(number, user, "paid", lines).insert(session=s)
        await User.find_one(User.id == user.id, session=s).inc({User.orders_placed: 1}, session=s)
        seen = await User.get(user.id, session=s)
        assert seen is not None
        if abort:
            raise Abort
    return seen.orders_placed


async def _run(uri: str, db: str, who: str, seed: bool) -> dict[str, Any]:
    client: AsyncClient = AsyncMongoClient(uri)
    try:
        await init_beanie(database=client[db], document_models=[User, Order])  # indexes too
        return await _app(client, who, seed)
    finally:
        await client.close()


async def _app(client: AsyncClient, who: str, seed: bool) -> dict[str, Any]:
    if seed:
        users = {e: User(email=e, name=n, orders_placed=p) for e, n, p in SEED_USERS}
        for user in users.values():
            await user.insert()
        for number, e, status, lines in SEED_ORDERS:
            await _new_order(number, users[e], status, lines).insert()

    me = await User(email=email(who), name=who).insert()
    me.name = renamed(who)
    await me.save()

    dup_key: Any = None
    try:
        await User(email="alice@example.com", name="Impostor").insert()
    except DuplicateKeyError as e:
        dup_key = (e.details or {}).get("keyValue")
    dup_update_key: Any = None
    me.email = "bob@example.com"
    try:
        await me.save()
    except DuplicateKeyError as e:
        dup_update_key = (e.details or {}).get("keyValue")
    reloaded = await User.get(me.id)
    assert reloaded is not None
    me = reloaded

    alice = await User.find_one(User.email == "alice@example.com").inc(
        {User.visits: 1}, response_type=UpdateResponse.NEW_DOCUMENT
    )
    assert isinstance(alice, User), alice

    first = await _next_number()
    new_numbers = []
    for i, lines in enumerate(NEW_ORDERS):
        new_numbers.append((await _new_order(first + i, me, "pending", lines).insert()).number)

    top = (
        await Order.find(Order.status == "pending")
        .sort(("total", SortDirection.DESCENDING), ("number", SortDirection.DESCENDING))
        .limit(2)
        .to_list()
    )
    pending_top2 = [o.number for o in top]

    skus = await Order.aggregate(
        [
            {"$unwind": "$items"},
            {"$group": {"_id": "$items.sku", "qty": {"$sum": "$items.qty"}}},
            {"$sort": {"_id": 1}},
            {"$project": {"_id": 0, "sku": "$_id", "qty": 1}},
        ]
    ).to_list()

    # The link is fetched by id: ``fetch_links=True`` would $lookup on ``user.$id``, a
    # DBRef field path the embedded upstream does not resolve, with or without Argon.
    order = await Order.find_one(Order.number == new_numbers[1])
    assert order is not None
    buyer = await order.user.fetch()
    assert isinstance(buyer, User), buyer
    populated = {"number": order.number, "email": buyer.email, "name": buyer.name}

    shipped = await Order.find(Order.status == "paid").update_many({"$set": {"status": "shipped"}})

    lowest = await Order.find(Order.status == "pending").sort("+number").first_or_none()
    assert lowest is not None
    deleted = lowest.number
    await lowest.delete()

    bob = await User.find_one(User.email == "bob@example.com")
    assert bob is not None
    committed = await _next_number()
    in_txn = await _checkout(client, alice, committed, COMMITTED_ITEMS, abort=False)
    with suppress(Abort):
        await _checkout(client, bob, committed + 1, ABORTED_ITEMS, abort=True)
    aborted_visible = await Order.find(Order.number == committed + 1).count() > 0
    paid = await Order.find_one(Order.number == committed)
    assert paid is not None
    payer = await paid.user.fetch()
    assert isinstance(payer, User) and payer.id == alice.id
    bob_now = await User.get(bob.id)
    assert bob_now is not None

    return {
        "dup_key": dup_key,
        "dup_update_key": dup_update_key,
        "alice_visits": alice.visits,
        "new_numbers": new_numbers,
        "pending_top2": pending_top2,
        "skus": skus,
        "populated": populated,
        "shipped": shipped.modified_count if isinstance(shipped, UpdateResult) else shipped,
        "deleted": deleted,
        "committed": committed,
        "in_txn_orders_placed": in_txn,
        "aborted_visible": aborted_visible,
        "bob_orders_placed": bob_now.orders_placed,
        "numbers": [o.number async for o in Order.find_all(sort="+number", batch_size=2)],
        "users": await User.find_all().count(),
        "orders": await Order.find_all().count(),
    }


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    with own_stack() as pair:
        yield pair


def test_beanie_app_on_main_then_on_a_branch(stack: tuple[Process, Process]) -> None:
    uri = stack[1].uri

    def run(who: str, seed: bool) -> dict[str, Any]:
        db = DB if who == "main" else f"{DB}@{BRANCH}"
        return asyncio.run(asyncio.wait_for(_run(uri, db, who, seed), timeout=180))

    check_app(stack, DB, BRANCH, run)


def test_beanie_positional_update_on_a_branch(stack: tuple[Process, Process]) -> None:
    db, branch = "appdb_bn_pos", "bn-positional"

    async def bump_order(who: str, seed: bool) -> list[int]:
        client: AsyncClient = AsyncMongoClient(stack[1].uri)
        try:
            name = db if who == "main" else f"{db}@{branch}"
            await init_beanie(database=client[name], document_models=[User, Order])
            if seed:
                alice = await User(email="alice@example.com", name="Alice").insert()
                await _new_order(1, alice, "pending", POSITIONAL_ORDER).insert()
            # One filter document: Beanie joins several with $and, and the embedded
            # upstream finds no positional match through $and, with or without Argon.
            await Order.find_one({"number": 1, "items.sku": "A"}).update(
                {"$inc": {"items.$.qty": 1}}
            )
            order = await Order.find_one(Order.number == 1)
            assert order is not None
            return [item.qty for item in order.items]
        finally:
            await client.close()

    def bump(who: str, seed: bool) -> list[int]:
        return asyncio.run(asyncio.wait_for(bump_order(who, seed), timeout=180))

    check_positional_update(stack, db, branch, bump)
