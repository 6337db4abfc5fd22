"""The one shop application that every ORM test runs, and what it must leave behind.

Each ORM module implements the same small app: users with a unique email,
orders that reference a user and embed their items. A run creates the ORM's
indexes, seeds (on main only), then *exercises* the app as ``who``:

1. creates the user ``<who>@example.com`` and renames it (a save of a loaded document);
2. tries to create a second ``alice@example.com`` (a duplicate key on insert), then
   to change the new user's email to bob's (a duplicate key on update);
3. counts a visit of alice and reads the count back (findAndModify);
4. places two pending orders for the new user, numbered after the highest one;
5. lists the two costliest pending orders (filter, sort, limit);
6. adds up the quantity ordered per SKU (an aggregation);
7. loads the second new order with its user (a reference / populate);
8. ships every paid order (a multi-document update);
9. deletes the pending order with the lowest number;
10. in a committed transaction, places a paid order for alice and counts it on
    her user document, reading the count back inside the transaction;
11. in a transaction that the app aborts by raising, does the same for bob,
    then checks that neither write is visible;
12. lists every order number through a cursor of two documents a batch.

The app runs on main as ``main``, then on a branch of it as ``branch``, so the
summaries and final states below are what each run must report and leave.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from bson import DBRef, ObjectId
from pymongo import MongoClient
from pymongo.database import Database

from ..processes import Process
from ..stacks import argon

Client = MongoClient[dict[str, Any]]

# (sku, qty, unit price in cents)
Line = tuple[str, int, int]

SEED_USERS: list[tuple[str, str, int]] = [  # email, name, orders_placed
    ("alice@example.com", "Alice", 2),
    ("bob@example.com", "Bob", 2),
]
Status = Literal["pending", "paid", "shipped"]

SEED_ORDERS: list[tuple[int, str, Status, list[Line]]] = [  # number, email, status, items
    (1, "alice@example.com", "pending", [("A", 2, 500), ("B", 1, 1200)]),
    (2, "bob@example.com", "paid", [("B", 3, 1200)]),
    (3, "alice@example.com", "shipped", [("C", 1, 999)]),
    (4, "bob@example.com", "pending", [("A", 1, 500), ("C", 2, 999)]),
]
NEW_ORDERS: list[list[Line]] = [[("A", 1, 500)], [("B", 2, 1200), ("C", 1, 999)]]
COMMITTED_ITEMS: list[Line] = [("A", 4, 500)]
ABORTED_ITEMS: list[Line] = [("C", 1, 999)]


# An order whose second item the positional-update tests bump: ``items.$`` with
# ``items.sku == "A"`` must reach index 1.
POSITIONAL_ORDER: list[Line] = [("B", 1, 1200), ("A", 1, 500)]


def total(items: list[Line]) -> int:
    return sum(qty * price for _sku, qty, price in items)


def email(who: str) -> str:
    return f"{who}@example.com"


def renamed(who: str) -> str:
    return f"{who.title()} User"


def expected_summary(who: str) -> dict[str, Any]:
    """What the app reports when exercised as ``who`` (``main`` first, then ``branch``)."""
    common = {
        "dup_key": {"email": "alice@example.com"},
        "dup_update_key": {"email": "bob@example.com"},
        "aborted_visible": False,
        "bob_orders_placed": 2,
        "shipped": 1,  # main: order 2; branch: order 7, paid on main
    }
    if who == "main":
        return {
            **common,
            "alice_visits": 1,
            "new_numbers": [5, 6],
            "pending_top2": [6, 4],
            "skus": [{"sku": "A", "qty": 4}, {"sku": "B", "qty": 6}, {"sku": "C", "qty": 4}],
            "populated": {"number": 6, "email": "main@example.com", "name": "Main User"},
            "deleted": 1,
            "committed": 7,
            "in_txn_orders_placed": 3,
            "numbers": [2, 3, 4, 5, 6, 7],
            "users": 3,
            "orders": 6,
        }
    assert who == "branch"
    return {
        **common,
        "alice_visits": 2,
        "new_numbers": [8, 9],  # 8 was only taken by main's aborted transaction
        "pending_top2": [9, 6],  # 6 and 9 cost the same
        "skus": [{"sku": "A", "qty": 7}, {"sku": "B", "qty": 7}, {"sku": "C", "qty": 5}],
        "populated": {"number": 9, "email": "branch@example.com", "name": "Branch User"},
        "deleted": 4,
        "committed": 10,
        "in_txn_orders_placed": 4,
        "numbers": [2, 3, 5, 6, 7, 8, 9, 10],
        "users": 4,
        "orders": 8,
    }


def _order(number: int, who: str, status: str, lines: list[Line]) -> dict[str, Any]:
    return {
        "number": number,
        "user": who,
        "status": status,
        "items": [{"sku": s, "qty": q, "price": p} for s, q, p in lines],
        "total": total(lines),
    }


def expected_state(after: str) -> dict[str, Any]:
    """The app's data, by natural keys, after the run of ``after``."""
    alice, bob, me_main = "alice@example.com", "bob@example.com", "main@example.com"
    users = {
        alice: {"name": "Alice", "visits": 1, "orders_placed": 3},
        bob: {"name": "Bob", "visits": 0, "orders_placed": 2},
        me_main: {"name": "Main User", "visits": 0, "orders_placed": 0},
    }
    orders = {
        2: _order(2, bob, "shipped", [("B", 3, 1200)]),
        3: _order(3, alice, "shipped", [("C", 1, 999)]),
        4: _order(4, bob, "pending", [("A", 1, 500), ("C", 2, 999)]),
        5: _order(5, me_main, "pending", NEW_ORDERS[0]),
        6: _order(6, me_main, "pending", NEW_ORDERS[1]),
        7: _order(7, alice, "paid", COMMITTED_ITEMS),
    }
    if after == "branch":
        me_branch = "branch@example.com"
        users[alice] = {"name": "Alice", "visits": 2, "orders_placed": 4}
        users[me_branch] = {"name": "Branch User", "visits": 0, "orders_placed": 0}
        del orders[4]
        orders[7] = _order(7, alice, "shipped", COMMITTED_ITEMS)
        orders[8] = _order(8, me_branch, "pending", NEW_ORDERS[0])
        orders[9] = _order(9, me_branch, "pending", NEW_ORDERS[1])
        orders[10] = _order(10, alice, "paid", COMMITTED_ITEMS)
    else:
        assert after == "main"
    return {"users": users, "orders": [orders[n] for n in sorted(orders)]}


def _ref_id(ref: Any) -> Any:
    """A reference as stored: an ObjectId (mongoengine, Mongoose) or a DBRef (Beanie)."""
    return ref.id if isinstance(ref, DBRef) else ref


def state(db: Database[dict[str, Any]]) -> dict[str, Any]:
    """The app's data as ``db`` shows it, by natural keys (emails, order numbers)."""
    by_id: dict[ObjectId, str] = {}
    users: dict[str, dict[str, Any]] = {}
    for u in db.users.find():
        by_id[u["_id"]] = u["email"]
        users[u["email"]] = {k: u[k] for k in ("name", "visits", "orders_placed")}
    orders = [
        {
            "number": o["number"],
            "user": by_id.get(_ref_id(o["user"]), f"dangling {o['user']!r}"),
            "status": o["status"],
            "items": [{k: i[k] for k in ("sku", "qty", "price")} for i in o["items"]],
            "total": o["total"],
        }
        for o in db.orders.find().sort("number", 1)
    ]
    return {"users": users, "orders": orders}


def snapshot(db: Database[dict[str, Any]]) -> dict[str, Any]:
    """Every document and index of ``db``'s own collections, exactly as stored.

    Read on the upstream directly, so Argon's overlay collections
    (``__argon.<id>.<coll>``), which hold branches' documents, are left out.
    """
    out: dict[str, Any] = {}
    for name in sorted(db.list_collection_names()):
        if name.startswith(("__argon.", "system.")):
            continue
        coll = db[name]
        indexes = sorted((dict(ix) for ix in coll.list_indexes()), key=lambda ix: ix["name"])
        out[name] = {"docs": list(coll.find().sort("_id", 1)), "indexes": indexes}
    return out


def unique_email_index(db: Database[dict[str, Any]]) -> bool:
    """Whether ``db.users`` has a unique index on exactly ``email``."""
    return any(
        ix.get("unique") and list(ix["key"].items()) == [("email", 1)]
        for ix in db.users.list_indexes()
    )


def check_app(
    stack: tuple[Process, Process], db: str, branch: str, run: Callable[[str, bool], Any]
) -> None:
    """Run the app on main (seeding it), then on ``branch`` made from main.

    ``run(who, seed)`` runs the app once as ``who`` (``main`` on database ``db``
    of main, ``branch`` on ``db`` of ``branch``) and returns its summary. Main
    must come out of the branch run exactly as it went in, document for
    document and index for index, read on the upstream without Argon.
    """
    upstream, proxy = stack
    direct: Client = MongoClient(upstream.uri)
    via: Client = MongoClient(proxy.uri)
    try:
        assert run("main", True) == expected_summary("main")
        assert state(direct[db]) == expected_state("main")
        assert unique_email_index(direct[db])
        before = snapshot(direct[db])

        argon(via, "createBranch", name=branch)
        assert run("branch", False) == expected_summary("branch")

        assert snapshot(direct[db]) == before
        assert state(via[db]) == expected_state("main")
        on_branch = via[f"{db}@{branch}"]
        assert state(on_branch) == expected_state("branch")
        assert unique_email_index(on_branch)
    finally:
        direct.close()
        via.close()


def check_positional_update(
    stack: tuple[Process, Process], db: str, branch: str, bump: Callable[[str, bool], Any]
) -> None:
    """``bump(who, seed)`` adds one A to order 1 (seeding it as ``POSITIONAL_ORDER``
    on main first if ``seed``) through the ORM and returns the order's quantities."""
    upstream, proxy = stack
    direct: Client = MongoClient(upstream.uri)
    via: Client = MongoClient(proxy.uri)
    try:
        assert bump("main", True) == [1, 2]
        argon(via, "createBranch", name=branch)
        assert bump("branch", False) == [1, 3]
        main_order = direct[db].orders.find_one({"number": 1})
        assert main_order is not None
        assert [i["qty"] for i in main_order["items"]] == [1, 2]
    finally:
        direct.close()
        via.close()
