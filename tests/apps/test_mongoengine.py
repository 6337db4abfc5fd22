"""The shop app on mongoengine (sync, on pymongo) through Argon, on main then on a branch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from typing import Any, ClassVar, cast

import pytest
from mongoengine import (
    Document,
    EmbeddedDocument,
    EmbeddedDocumentListField,
    IntField,
    NotUniqueError,
    ReferenceField,
    StringField,
    connect,
    disconnect,
)
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

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
    check_app,
    check_positional_update,
    email,
    renamed,
    total,
)

DB = "appdb_me"
BRANCH = "me-feature"


class Item(EmbeddedDocument):
    sku = StringField(required=True)
    qty = IntField(required=True, min_value=1)
    price = IntField(required=True, min_value=0)


class User(Document):
    email = StringField(required=True, unique=True)
    name = StringField(required=True)
    visits = IntField(default=0)
    orders_placed = IntField(default=0)
    meta: ClassVar[dict[str, Any]] = {"collection": "users", "auto_create_index": False}


class Order(Document):
    number = IntField(required=True, unique=True)
    user = ReferenceField(User, required=True)
    items = EmbeddedDocumentListField(Item)
    status = StringField(required=True, choices=("pending", "paid", "shipped"))
    total = IntField(required=True)
    meta: ClassVar[dict[str, Any]] = {
        "collection": "orders",
        "indexes": [("user", "-number"), "status"],
        "auto_create_index": False,
    }


class Abort(Exception):
    """Raised by the app to abandon a transaction."""


def _items(lines: list[Line]) -> list[Item]:
    return [Item(sku=s, qty=q, price=p) for s, q, p in lines]


def _new_order(number: int, user: User, status: str, lines: list[Line]) -> Order:
    return Order(number=number, user=user, status=status, items=_items(lines), total=total(lines))


def _next_number() -> int:
    last = Order.objects.order_by("-number").only("number").first()
    return 1 if last is None else int(last.number) + 1


def _checkout(
    client: MongoClient[dict[str, Any]], user: User, number: int, lines: list[Line], abort: bool
) -> int:
    """Place a paid order and count it on its user, in one transaction; return the
    user's count as the transaction reads it.

    mongoengine has no transaction API of its own: the documents are built and
    validated by the ORM and written through its collections with a session.
    """
    order = _new_order(number, user, "paid", lines)
    order.validate()
    users = User._get_collection()
    with client.start_session() as s, s.start_transaction():
        Order._get_collection().insert_one(order.to_mongo(), session=s)
        users.update_one({"_id": user.pk}, {"$inc": {"orders_placed": 1}}, session=s)
        placed = int(users.find_one({"_id": user.pk}, session=s)["orders_placed"])
        if abort:
            raise Abort
    return placed


def _dup_key(e: NotUniqueError) -> Any:
    """The ``keyValue`` of the duplicate-key error that mongoengine translated."""
    cause = e.__context__
    assert isinstance(cause, DuplicateKeyError), repr(cause)
    return (cause.details or {}).get("keyValue")


def _run(uri: str, db: str, who: str, seed: bool) -> dict[str, Any]:
    connect(db=db, host=uri, uuidRepresentation="standard")
    try:
        return _app(who, seed)
    finally:
        disconnect()


def _app(who: str, seed: bool) -> dict[str, Any]:
    User.ensure_indexes()
    Order.ensure_indexes()
    if seed:
        users = {e: User(email=e, name=n, orders_placed=p).save() for e, n, p in SEED_USERS}
        for number, e, status, lines in SEED_ORDERS:
            _new_order(number, users[e], status, lines).save()

    me = User(email=email(who), name=who).save()
    me.name = renamed(who)
    me.save()

    dup_key: Any = None
    try:
        User(email="alice@example.com", name="Impostor").save()
    except NotUniqueError as e:
        dup_key = _dup_key(e)
    dup_update_key: Any = None
    me.email = "bob@example.com"
    try:
        me.save()
    except NotUniqueError as e:
        dup_update_key = _dup_key(e)
    me.reload()

    alice = User.objects(email="alice@example.com").modify(inc__visits=1, new=True)

    first = _next_number()
    new_numbers = []
    for i, lines in enumerate(NEW_ORDERS):
        new_numbers.append(_new_order(first + i, me, "pending", lines).save().number)

    top = Order.objects(status="pending").order_by("-total", "-number").limit(2)
    pending_top2 = [o.number for o in top]

    skus = list(
        Order.objects.aggregate(
            [
                {"$unwind": "$items"},
                {"$group": {"_id": "$items.sku", "qty": {"$sum": "$items.qty"}}},
                {"$sort": {"_id": 1}},
                {"$project": {"_id": 0, "sku": "$_id", "qty": 1}},
            ]
        )
    )

    order = Order.objects.get(number=new_numbers[1])
    buyer = order.user  # dereferenced by the ORM
    populated = {"number": order.number, "email": buyer.email, "name": buyer.name}

    shipped = Order.objects(status="paid").update(set__status="shipped")

    lowest = Order.objects(status="pending").order_by("number").first()
    deleted = lowest.number
    lowest.delete()

    client = cast(MongoClient[dict[str, Any]], User._get_db().client)
    committed = _next_number()
    in_txn = _checkout(client, alice, committed, COMMITTED_ITEMS, abort=False)
    bob = User.objects.get(email="bob@example.com")
    with suppress(Abort):
        _checkout(client, bob, committed + 1, ABORTED_ITEMS, abort=True)
    aborted_visible = Order.objects(number=committed + 1).count() > 0
    assert Order.objects.get(number=committed).user.pk == alice.pk

    return {
        "dup_key": dup_key,
        "dup_update_key": dup_update_key,
        "alice_visits": alice.visits,
        "new_numbers": new_numbers,
        "pending_top2": pending_top2,
        "skus": skus,
        "populated": populated,
        "shipped": shipped,
        "deleted": deleted,
        "committed": committed,
        "in_txn_orders_placed": in_txn,
        "aborted_visible": aborted_visible,
        "bob_orders_placed": User.objects.get(pk=bob.pk).orders_placed,
        "numbers": [o.number for o in Order.objects.order_by("number").batch_size(2)],
        "users": User.objects.count(),
        "orders": Order.objects.count(),
    }


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    with own_stack() as pair:
        yield pair


def test_mongoengine_app_on_main_then_on_a_branch(stack: tuple[Process, Process]) -> None:
    uri = stack[1].uri

    def run(who: str, seed: bool) -> dict[str, Any]:
        return _run(uri, DB if who == "main" else f"{DB}@{BRANCH}", who, seed)

    check_app(stack, DB, BRANCH, run)


def test_mongoengine_positional_update_on_a_branch(stack: tuple[Process, Process]) -> None:
    db, branch = "appdb_me_pos", "me-positional"

    def bump(who: str, seed: bool) -> list[int]:
        name = db if who == "main" else f"{db}@{branch}"
        connect(db=name, host=stack[1].uri, uuidRepresentation="standard")
        try:
            if seed:
                alice = User(email="alice@example.com", name="Alice").save()
                _new_order(1, alice, "pending", POSITIONAL_ORDER).save()
            Order.objects(number=1, items__sku="A").update_one(inc__items__S__qty=1)
            return [item.qty for item in Order.objects.get(number=1).items]
        finally:
            disconnect()

    check_positional_update(stack, db, branch, bump)
