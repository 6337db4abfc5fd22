"""Differential state machine: every branch against a plain physical copy in mongod.

Each Argon branch has a copy database in the upstream that receives the same
writes directly. Random writes on random branches (nested, created at random
moments) and random reads must give the same answers through Argon as the
copy gives directly: same documents, same order under a total sort, same
errors. Isolation both ways follows: a copy only ever sees its own writes.
"""

from __future__ import annotations

import fractions
import itertools
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bson import Int64
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from pymongo import MongoClient, monitoring
from pymongo.errors import DuplicateKeyError, OperationFailure

from argon_proxy.errors import PROTECTED_BRANCH

from ..processes import Process, start_proxy, start_upstream

Client = MongoClient[dict[str, Any]]
DB = "model"
COLL = "items"

ids = st.integers(0, 14)
a_values = st.integers(0, 5)
b_values = st.sampled_from(["x", "y", "z"])
# Numbers equal or nearly equal across BSON types, as distinct must tell them.
N_VALUES: list[Any] = [1, 1.0, Int64(1), 2**53, Int64(2**53), Int64(2**53 + 1), float(2**53)]
N_VALUES += [2.5, {"x": 1}, {"x": 1.0}, {"x": Int64(2)}]
n_values = st.sampled_from(N_VALUES)
documents = st.fixed_dictionaries(
    {"_id": ids, "a": a_values},
    optional={
        "n": n_values,
        "b": b_values,
        "c": st.fixed_dictionaries({"d": st.integers(0, 3)}),
        "tags": st.lists(b_values, max_size=3),
    },
)
filters = st.one_of(
    st.just({}),
    st.builds(lambda k: {"a": {"$gt": k}}, a_values),
    st.builds(lambda k: {"a": k}, a_values),
    st.builds(lambda v: {"b": v}, b_values),
    st.builds(lambda v: {"tags": v}, b_values),
    st.builds(lambda k: {"c.d": {"$lte": k}}, st.integers(0, 3)),
    st.just({"b": {"$exists": False}}),
    st.builds(lambda lo, hi: {"_id": {"$gte": lo, "$lt": hi}}, ids, ids),
    # by _id: each layer is asked on its _id index, hidden ids dropped apart
    st.builds(lambda k: {"_id": k}, ids),
    st.builds(lambda ks: {"_id": {"$in": ks}}, st.lists(ids, max_size=3)),
    st.just({"b": re.compile("^[xy]")}),  # a BSON regex value; "b" may be indexed
    st.just({"tags": {"$in": [re.compile("z$"), "x"]}}),
)
updates = st.one_of(
    st.builds(lambda k: {"$set": {"a": k}}, a_values),
    st.just({"$inc": {"a": 1}}),
    st.just({"$unset": {"b": ""}}),
    st.builds(lambda v: {"$set": {"b": v, "c.d": 1}}, b_values),
    st.builds(lambda v: {"$push": {"tags": v}}, b_values),
    st.just([{"$set": {"a": {"$add": [{"$ifNull": ["$a", 0]}, 10]}}}]),  # a pipeline update
)
projections = st.sampled_from(
    [
        None,
        {"a": 1},
        {"b": 0, "c": 0},
        {"_id": 0, "a": 1, "b": 1},
        {"_id": 1},
        {"_id": 0},
        {"tags": {"$slice": 1}},
        {"tags": {"$slice": -1}, "a": 1},
        {"tags": {"$elemMatch": {"$in": ["x", "y"]}}},
        {"t": {"$add": ["$a", 1]}},
        {"_id": 0, "t": {"$add": ["$a", 10]}, "b": 1},
    ]
)
# Projections an aggregation cannot apply: a branch answers them in one batch.
_FIND_ONLY = ("$slice", "$elemMatch")


def for_copy(value: Any) -> Any:
    """``value`` as the plain copy must be asked: a regex value as ``$regex`` (the
    same meaning), since the test upstream's planner misanswers the literal form
    on an indexed field."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(v, re.Pattern) and not k.startswith("$"):
                out[k] = {"$regex": v}
            elif isinstance(v, dict) and set(v) == {"$in"} and _has_pattern(v["$in"]):
                # {f: {$in: [/re/, x]}} is {$or: [{f: {$regex: /re/}}, {f: x}]}, which
                # the upstream also answers right on an indexed (multikey) field.
                either = [{k: {"$regex": p} if isinstance(p, re.Pattern) else p} for p in v["$in"]]
                out.setdefault("$and", []).append({"$or": either})
            else:
                out[k] = for_copy(v)
        return out
    if isinstance(value, list | tuple):
        return type(value)(for_copy(v) for v in value)
    return value


def _has_pattern(values: Any) -> bool:
    return isinstance(values, list) and any(isinstance(v, re.Pattern) for v in values)


def bson_equal_key(value: Any) -> Any:
    """Equal for values BSON comparison finds equal (numbers across types)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", fractions.Fraction(value))
    if isinstance(value, dict):
        return ("doc", tuple((k, bson_equal_key(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("array", tuple(bson_equal_key(v) for v in value))
    return (type(value).__name__, value)


def _index_keys(doc: dict[str, Any], path: str) -> set[Any]:
    """The keys ``doc`` has in a single-field index on ``path`` (an array by its
    elements, an empty one by itself, a missing field as null)."""
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    values = value if isinstance(value, list) and value else [value]
    return {bson_equal_key(v) for v in values}


def order_dependent(coll: Any, before: dict[Any, dict[str, Any]], session: Any = None) -> bool:
    """Whether a multi-document update that turned ``before`` (the matched
    documents by ``_id``) into what ``coll`` holds now moved a unique key one
    matched document held to another: mongod may refuse such a statement,
    depending on the order it reaches them, and Argon refuses it always."""
    after = {d["_id"]: d for d in coll.find({"_id": {"$in": list(before)}}, session=session)}
    for index in coll.index_information(session=session).values():
        if not index.get("unique") or index["key"] == [("_id", 1)]:
            continue
        path = index["key"][0][0]
        old = {i: _index_keys(d, path) for i, d in before.items()}
        new = {i: _index_keys(d, path) for i, d in after.items()}
        moved = [i for i in new if new[i] != old[i]]
        if any(new[i] & old[j] for i in moved for j in moved if i != j):
            return True
    return False


class Commands(monitoring.CommandListener):
    """The names of the commands the Argon client sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


SENT = Commands()


def _proxy(upstream_uri: str) -> Process:
    """A proxy that bundles the children of any branch with two or more, so the
    model's few branches read through bundles (``bundles.py``) as often as not."""
    return start_proxy(upstream_uri, "--log-level", "WARNING", env={"ARGON_BUNDLE_AT": "2"})


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Process, Process]]:
    up = start_upstream()
    proxy = _proxy(f"mongodb://127.0.0.1:{up.port}")
    yield up, proxy
    proxy.stop()
    up.stop()


# Without the explain phase: it traces every line of a failing run again, which on a
# loaded machine takes longer than the run itself and tells nothing the steps do not.
PHASES = (
    tuple(p for p in Phase if p is not Phase.explain)
    if not os.environ.get("MODEL_NO_SHRINK")
    else (Phase.generate,)
)


# Multi-document statements that mongod applies document by document, so an error
# can leave some documents changed; Argon runs each as one transaction.
_PARTIAL_ON_MONGOD = frozenset({"update_many", "aggregate"})


class _Skip(Exception):
    """Both sides raised the same error: nothing more to compare."""


def _is_error(value: Any) -> bool:
    return value == "E11000" or (isinstance(value, tuple) and value[:1] == ("error",))


def _same_errors(rule: Any) -> Any:
    import functools

    @functools.wraps(rule)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return rule(*args, **kwargs)
        except _Skip:
            return None

    return wrapper


# Set by the test; kept off the class, whose attributes hypothesis inspects for rules.
# "argon" and, when the test runs two proxies on one upstream, "argon2": operations
# alternate between them, so each proxy keeps meeting the other's changes.
CLIENTS: dict[str, Client] = {}
# Restarts the proxies (new processes, same upstream) and puts their clients in CLIENTS.
RESTART: list[Callable[[], None]] = []
EXTRA = ("other",)  # collections main may create while branches live


TXN_STEPS = ("insert", "update", "delete", "find", "count")


def _txn_step(
    database: Any,
    session: Any,
    step: tuple[str, dict[str, Any], dict[str, Any], Any],
    convert: Callable[[Any], Any],
    into_extra: bool,
) -> Any:
    """One statement of a transaction; its result, or its error code."""
    kind, doc, flt, upd = step
    coll = database[EXTRA[0] if into_extra and kind == "insert" else COLL]
    flt = convert(flt)
    try:
        if kind == "insert":
            return coll.insert_one(dict(doc), session=session).inserted_id
        if kind == "update":
            res = coll.update_many(flt, upd, session=session)
            return res.matched_count, res.modified_count
        if kind == "delete":
            return coll.delete_many(flt, session=session).deleted_count
        if kind == "find":
            return list(coll.find(flt, sort=[("_id", 1)], session=session))
        return coll.count_documents(flt, session=session)
    except DuplicateKeyError:
        return "E11000"
    except OperationFailure as exc:
        return ("error", exc.code)


class BranchModel(RuleBasedStateMachine):
    """Argon's branches versus physical copies."""

    names = itertools.count()
    branches = Bundle("branches")
    marks = Bundle("marks")

    def __init__(self) -> None:
        super().__init__()
        self.direct: Client = CLIENTS["direct"]
        self.copies: dict[str, str] = {}  # branch -> copy database
        self.parents: dict[str, str] = {}
        self.turn = itertools.count()
        self.restarts = 0
        self.horizon = -1  # main's LSN at its last drop or rename no branch kept

    @property
    def argon(self) -> Client:
        """The next proxy's client, in turn."""
        proxies = [CLIENTS[k] for k in ("argon", "argon2") if k in CLIENTS]
        return proxies[next(self.turn) % len(proxies)]

    def coll_on(self, branch: str) -> Any:
        db = DB if branch == "main" else f"{DB}@{branch.replace('/', '~')}"
        return self.argon[db][COLL]

    def copy_of(self, branch: str) -> Any:
        return self.direct[self.copies[branch]][COLL]

    @initialize(
        target=branches, docs=st.lists(documents, max_size=10, unique_by=lambda d: d["_id"])
    )
    def start(self, docs: list[dict[str, Any]]) -> str:
        self.direct.drop_database(DB)
        self.copies["main"] = f"copy_{next(self.names)}"
        if docs:
            self.coll_on("main").insert_many(docs)
            self.copy_of("main").insert_many(docs)
        for coll in (self.coll_on("main"), self.copy_of("main")):
            coll.create_index("b")  # regex values on an indexed field (see for_copy)
        return "main"

    @rule(target=branches, parent=branches)
    def create_branch(self, parent: str) -> str:
        name = f"b{next(self.names)}" if parent == "main" else f"{parent}/n{next(self.names)}"
        self.argon.admin.command({"argon": "createBranch", "name": name, "from": parent})
        self.copies[name] = f"copy_{next(self.names)}"
        self.parents[name] = parent
        source = self.direct[self.copies[parent]]
        if COLL in source.list_collection_names():
            self.direct[self.copies[name]].create_collection(COLL)
            for index in source[COLL].list_indexes():
                if index["name"] != "_id_":
                    self.copy_of(name).create_index(
                        list(index["key"].items()),
                        name=index["name"],
                        unique=bool(index.get("unique")),
                    )
        docs = list(self.copy_of(parent).find())
        if docs:
            self.copy_of(name).insert_many(docs)
        for extra in EXTRA:
            if extra in source.list_collection_names():
                docs = list(source[extra].find())
                self.direct[self.copies[name]].create_collection(extra)
                if docs:
                    self.direct[self.copies[name]][extra].insert_many(docs)
        return name

    @staticmethod
    def for_argon(branch: str, value: Any) -> Any:
        """``value`` as Argon is asked on ``branch``: main's reads pass straight
        through to the upstream, whose answer for a regex value on an indexed field
        is its own business, so main is asked the ``$regex`` form like the copy."""
        return for_copy(value) if branch == "main" else value

    def both(
        self,
        branch: str,
        op: str,
        *args: Any,
        refusable: Callable[[], bool] | None = None,
        **kwargs: Any,
    ) -> tuple[Any, Any]:
        """Run the same operation through Argon and on the copy; results or error
        codes. ``refusable``: whether Argon may refuse (E11000) what the copy did."""
        out = []
        for coll, call_args in (
            (self.coll_on(branch), self.for_argon(branch, args)),
            (self.copy_of(branch), for_copy(args)),
        ):
            try:
                out.append(getattr(coll, op)(*call_args, **kwargs))
            except DuplicateKeyError:
                out.append("E11000")
            except OperationFailure as exc:
                out.append(("error", exc.code))
        if out[0] == "E11000" and not _is_error(out[1]) and refusable is not None:
            assert refusable(), (op, out)
            self.resync(branch)  # the copy changed; Argon changed nothing
            raise _Skip
        if _is_error(out[0]) or _is_error(out[1]):
            assert out[0] == out[1], (op, out)
            if op in _PARTIAL_ON_MONGOD:
                self.resync(branch)
            raise _Skip
        return out[0], out[1]

    def resync(self, branch: str) -> None:
        """After a statement mongod applied in part and Argon not at all (Argon's
        statements are atomic; see README), the copy takes Argon's state."""
        copy = self.copy_of(branch)
        copy.delete_many({})
        docs = list(self.coll_on(branch).find())
        if docs:
            copy.insert_many(docs)

    @rule(branch=branches, doc=documents)
    @_same_errors
    def insert_one(self, branch: str, doc: dict[str, Any]) -> None:
        self.both(branch, "insert_one", dict(doc))

    @rule(branch=branches, docs=st.lists(documents, min_size=1, max_size=5), ordered=st.booleans())
    def insert_many(self, branch: str, docs: list[dict[str, Any]], ordered: bool) -> None:
        from pymongo.errors import BulkWriteError

        results: list[tuple[int, list[int]] | None] = []
        for coll in (self.coll_on(branch), self.copy_of(branch)):
            try:
                coll.insert_many([dict(d) for d in docs], ordered=ordered)
                results.append(None)
            except BulkWriteError as exc:
                d = exc.details
                results.append((d["nInserted"], sorted(e["index"] for e in d["writeErrors"])))
        assert results[0] == results[1]

    @rule(branch=branches, flt=filters, upd=updates, many=st.booleans())
    @_same_errors
    def update(self, branch: str, flt: dict[str, Any], upd: Any, many: bool) -> None:
        if many:
            copy = self.copy_of(branch)
            before = {d["_id"]: d for d in copy.find(for_copy(flt))}
            got, want = self.both(
                branch, "update_many", flt, upd, refusable=lambda: order_dependent(copy, before)
            )
            assert (got.matched_count, got.modified_count) == (
                want.matched_count,
                want.modified_count,
            )
        else:
            # update_one picks "a" match; make the pick deterministic by naming an _id.
            target = self.copy_of(branch).find_one(for_copy(flt), sort=[("_id", 1)])
            if target is None:
                return
            got, want = self.both(branch, "update_one", {**flt, "_id": target["_id"]}, upd)
            assert got.modified_count == want.modified_count

    @rule(branch=branches, key=ids, upd=updates)
    @_same_errors
    def upsert(self, branch: str, key: int, upd: Any) -> None:
        got, want = self.both(branch, "update_one", {"_id": key}, upd, upsert=True)
        assert (got.matched_count, got.upserted_id) == (want.matched_count, want.upserted_id)

    @rule(
        branch=branches,
        steps=st.lists(
            st.one_of(
                st.tuples(st.just("update"), ids, updates, st.booleans()),
                st.tuples(st.just("delete"), ids),
            ),
            min_size=2,
            max_size=8,
        ),
        ordered=st.booleans(),
    )
    @_same_errors
    def bulk(self, branch: str, steps: list[tuple[Any, ...]], ordered: bool) -> None:
        """Single-document statements of one command, often on the same documents:
        they commit together, each seeing what the ones before it wrote."""
        from pymongo import DeleteOne, UpdateOne

        ops: list[Any] = [
            UpdateOne({"_id": s[1]}, s[2], upsert=s[3])
            if s[0] == "update"
            else DeleteOne({"_id": s[1]})
            for s in steps
        ]
        got, want = self.both(branch, "bulk_write", ops, ordered=ordered)
        counts = ("matched_count", "modified_count", "deleted_count", "upserted_ids")
        assert [getattr(got, c) for c in counts] == [getattr(want, c) for c in counts]

    @rule(
        branch=branches,
        steps=st.lists(st.tuples(ids, updates), min_size=2, max_size=8, unique_by=lambda s: s[0]),
        ordered=st.booleans(),
    )
    @_same_errors
    def bulk_by_id(self, branch: str, steps: list[tuple[int, Any]], ordered: bool) -> None:
        """Updates each naming a different ``_id``: applied together as a few
        commands (``pinned_updates.py``)."""
        from pymongo import UpdateOne

        ops = [UpdateOne({"_id": key}, upd) for key, upd in steps]
        got, want = self.both(branch, "bulk_write", ops, ordered=ordered)
        counts = ("matched_count", "modified_count")
        assert [getattr(got, c) for c in counts] == [getattr(want, c) for c in counts]

    @rule(branch=branches, key=ids, doc=documents)
    @_same_errors
    def replace(self, branch: str, key: int, doc: dict[str, Any]) -> None:
        body = {k: v for k, v in doc.items() if k != "_id"}
        got, want = self.both(branch, "replace_one", {"_id": key}, body)
        assert got.matched_count == want.matched_count

    @rule(branch=branches, flt=filters, many=st.booleans())
    @_same_errors
    def delete(self, branch: str, flt: dict[str, Any], many: bool) -> None:
        if many:
            got, want = self.both(branch, "delete_many", flt)
        else:
            target = self.copy_of(branch).find_one(for_copy(flt), sort=[("_id", 1)])
            if target is None:
                return
            got, want = self.both(branch, "delete_one", {"_id": target["_id"]})
        assert got.deleted_count == want.deleted_count

    @rule(branch=branches, flt=filters, upd=updates, new=st.booleans(), remove=st.booleans())
    @_same_errors
    def find_and_modify(
        self, branch: str, flt: dict[str, Any], upd: Any, new: bool, remove: bool
    ) -> None:
        from pymongo import ReturnDocument

        sort = [("a", -1), ("_id", 1)]
        if remove:
            got, want = self.both(branch, "find_one_and_delete", flt, sort=sort)
        else:
            got, want = self.both(
                branch,
                "find_one_and_update",
                flt,
                upd,
                sort=sort,
                return_document=ReturnDocument.AFTER if new else ReturnDocument.BEFORE,
            )
        assert got == want

    @rule(
        branch=branches,
        flt=filters,
        proj=projections,
        skip=st.integers(0, 3),
        limit=st.integers(0, 6),
        batch=st.integers(1, 4),
    )
    def find(
        self, branch: str, flt: dict[str, Any], proj: Any, skip: int, limit: int, batch: int
    ) -> None:
        def run(coll: Any, query: dict[str, Any]) -> list[Any]:
            cursor = coll.find(
                query, proj, sort=[("a", 1), ("_id", -1)], skip=skip, limit=limit, batch_size=batch
            )
            return list(cursor)

        SENT.sent.clear()
        got = run(self.coll_on(branch), self.for_argon(branch, flt))
        streamed = "getMore" in SENT.sent
        assert got == run(self.copy_of(branch), for_copy(flt))
        find_only = proj and any(
            isinstance(v, dict) and set(v) & set(_FIND_ONLY) for v in proj.values()
        )
        if not find_only and (limit == 0 or limit > batch):
            # A cursor streams a result bigger than its batch size, as on mongod.
            assert streamed or len(got) <= batch, (len(got), batch, SENT.sent)

    @rule(branch=branches, flt=filters)
    @_same_errors
    def count_and_distinct(self, branch: str, flt: dict[str, Any]) -> None:
        got, want = self.both(branch, "count_documents", flt)
        assert got == want
        got, want = self.both(branch, "distinct", "a", flt)
        assert sorted(got, key=repr) == sorted(want, key=repr)
        got, want = self.both(branch, "distinct", "tags", flt)
        assert sorted(got, key=repr) == sorted(want, key=repr)
        got, want = self.both(branch, "distinct", "n", flt)
        assert len(got) == len(want), (got, want)
        assert {bson_equal_key(v) for v in got} == {bson_equal_key(v) for v in want}

    @rule(branch=branches, flt=filters)
    @_same_errors
    def aggregate(self, branch: str, flt: dict[str, Any]) -> None:
        pipeline = [
            {"$match": flt},
            {"$group": {"_id": "$b", "n": {"$sum": 1}, "s": {"$sum": "$a"}}},
            {"$sort": {"_id": 1}},
        ]
        got, want = self.both(branch, "aggregate", pipeline)
        assert list(got) == list(want)

    @rule(branch=branches, depth=st.integers(0, 3))
    def graph_lookup(self, branch: str, depth: int) -> None:
        """A traversal over the branch's documents (``a`` names another's ``_id``),
        crossing its layers at every step."""
        stage = {
            "$graphLookup": {
                "from": COLL,
                "startWith": "$a",
                "connectFromField": "a",
                "connectToField": "_id",
                "as": "g",
                "maxDepth": depth,
            }
        }

        def reached(coll: Any) -> list[tuple[Any, list[Any]]]:
            rows = coll.aggregate([stage, {"$sort": {"_id": 1}}], batchSize=2)
            return [(r["_id"], sorted(str(d["_id"]) for d in r["g"])) for r in rows]

        assert reached(self.coll_on(branch)) == reached(self.copy_of(branch))

    @rule(branch=branches, flt=filters, a=a_values)
    @_same_errors
    def aggregate_merge(self, branch: str, flt: dict[str, Any], a: int) -> None:
        """$merge updates the matched documents. ($out is tested apart: the test upstream
        drops the target's indexes, and the target itself when nothing is output, where
        mongod keeps both.)"""
        stages = [{"$match": flt}, {"$set": {"a": a}}, {"$merge": {"into": COLL}}]
        self.both(branch, "aggregate", stages)

    @rule(
        branch=branches,
        field=st.sampled_from(["a", "b", "c.d", "tags"]),
        direction=st.sampled_from([1, -1]),
        unique=st.booleans(),
    )
    @_same_errors
    def create_index(self, branch: str, field: str, direction: int, unique: bool) -> None:
        self.both(branch, "create_index", [(field, direction)], unique=unique)

    @rule(
        branch=branches,
        field=st.sampled_from(["a", "b", "c.d", "tags"]),
        direction=st.sampled_from([1, -1]),
    )
    def drop_index(self, branch: str, field: str, direction: int) -> None:
        # A missing collection (26) and a missing index (27) both mean "no such index":
        # whether an update that matched nothing created the collection is an upstream
        # detail (see list_indexes).
        out = []
        for coll in (self.coll_on(branch), self.copy_of(branch)):
            try:
                coll.database.command({"dropIndexes": COLL, "index": f"{field}_{direction}"})
                out.append("dropped")
            except OperationFailure as exc:
                out.append("none" if exc.code in (26, 27) else f"error {exc.code}")
        assert out[0] == out[1], out

    @rule(branch=branches)
    def list_indexes(self, branch: str) -> None:
        def names(coll: Any) -> list[tuple[Any, ...]]:
            # Secondary indexes only: whether an update that matched nothing created the
            # collection (and its _id index) is an upstream detail, not a branch's business.
            try:
                found = coll.list_indexes()
                return sorted(
                    (i["name"], list(i["key"].items()), bool(i.get("unique")))
                    for i in found
                    if i["name"] != "_id_"
                )
            except OperationFailure as exc:
                return [] if exc.code == 26 else [("error", exc.code)]

        assert names(self.coll_on(branch)) == names(self.copy_of(branch))

    @rule(
        branch=branches,
        steps=st.lists(
            st.tuples(st.sampled_from(TXN_STEPS), documents, filters, updates),
            min_size=1,
            max_size=4,
        ),
        commit=st.booleans(),
        into_extra=st.booleans(),
    )
    def transaction(
        self,
        branch: str,
        steps: list[tuple[str, dict[str, Any], dict[str, Any], Any]],
        commit: bool,
        into_extra: bool,
    ) -> None:
        """The same statements in one client transaction through Argon and on the copy:
        each step answers alike (the transaction sees its own writes), and whether
        it commits or aborts, both end alike."""
        client = self.argon  # one proxy for the whole transaction
        db = DB if branch == "main" else f"{DB}@{branch.replace('/', '~')}"
        sides = (
            (client, client[db], lambda v: self.for_argon(branch, v)),
            (self.direct, self.direct[self.copies[branch]], for_copy),
        )
        sessions = [c.start_session() for c, _, _ in sides]
        try:
            for session in sessions:
                session.start_transaction()
            failed = False
            copy = sides[1][1][COLL]
            for step in steps:
                before = (
                    {d["_id"]: d for d in copy.find(for_copy(step[2]), session=sessions[1])}
                    if step[0] == "update"
                    else {}
                )
                out = [
                    _txn_step(database, session, step, convert, into_extra)
                    for (_, database, convert), session in zip(sides, sessions, strict=True)
                ]
                if step[0] == "update" and out[0] == "E11000" and not _is_error(out[1]):
                    assert order_dependent(copy, before, sessions[1]), (step, out)
                    failed = True  # Argon's refusal ended its transaction: both abort
                    break
                assert out[0] == out[1], (step, out)
                if _is_error(out[0]):
                    failed = True  # mongod ended the transaction: both sides abort
                    break
            for session in sessions:
                if commit and not failed:
                    session.commit_transaction()
                else:
                    session.abort_transaction()
        finally:
            for session in sessions:
                session.end_session()

    @rule(branch=branches, inside=documents, outside=documents)
    def transaction_beside_a_writer(
        self, branch: str, inside: dict[str, Any], outside: dict[str, Any]
    ) -> None:
        """A client's transaction, open on one proxy, inserts a document while the
        other proxy inserts another outside it. The outside write is not held up
        by the open transaction (mongod holds only the documents a transaction
        wrote); the transaction then commits, or fails at its commit as transient
        (it overlapped a writer of the same overlay); the branch ends as the copy
        with what committed, on both proxies."""
        copy = self.copy_of(branch)
        taken = {d["_id"] for d in copy.find({}, {"_id": 1})}
        unique = any(i.get("unique") for i in copy.index_information().values())
        if unique or inside["_id"] == outside["_id"] or {inside["_id"], outside["_id"]} & taken:
            return
        # A first write of the collection on the branch (or its children) inside the
        # transaction would register overlays in it, which the outside writer waits
        # for (docs/design.md): registered by a write before, as users' are.
        scratch = {"_id": "scratch", "a": 0}
        self.both(branch, "insert_one", scratch)
        self.both(branch, "delete_one", {"_id": "scratch"})
        client = self.argon  # the transaction's proxy; the outside write takes the next
        db = DB if branch == "main" else f"{DB}@{branch.replace('/', '~')}"
        with client.start_session() as session:
            session.start_transaction()
            client[db][COLL].insert_one(dict(inside), session=session)
            self.coll_on(branch).insert_one(dict(outside))
            copy.insert_one(for_copy(dict(outside)))
            try:
                session.commit_transaction()
            except OperationFailure as exc:
                assert exc.has_error_label("TransientTransactionError"), exc.details
                return
        copy.insert_one(for_copy(dict(inside)))

    @rule(target=marks, branch=branches)
    def mark(self, branch: str) -> tuple[str, int, list[Any]]:
        """Remember a branch's state and the LSN it had, to read it back later."""
        lsn = int(self.argon.admin.command({"argon": "status"})["lsn"])
        return branch, lsn, list(self.copy_of(branch).find({}, sort=[("_id", 1)]))

    @rule(mark=marks, flt=filters)
    def read_the_past(self, mark: tuple[str, int, list[Any]], flt: dict[str, Any]) -> None:
        branch, lsn, docs = mark
        if branch not in self.copies:
            return
        name = f"{DB}@{branch.replace('/', '~')}@lsn-{lsn}"
        if branch == "main" and lsn < self.horizon:
            with pytest.raises(OperationFailure) as info:
                self.argon[name][COLL].find_one()
            assert info.value.code == 2005, lsn
            return
        past = list(self.argon[name][COLL].find({}, sort=[("_id", 1)]))
        assert past == docs, (branch, lsn)
        matching = list(self.argon[name][COLL].find(flt, sort=[("_id", 1)]))
        self.direct["scratch"][COLL].drop()
        if docs:
            self.direct["scratch"][COLL].insert_many(docs)
        assert matching == list(self.direct["scratch"][COLL].find(flt, sort=[("_id", 1)]))

    @rule(branch=branches, doc=documents)
    def write_another_collection(self, branch: str, doc: dict[str, Any]) -> None:
        """A collection that may not exist yet, on any branch: on main it appears while
        branches live, and must stay off every branch made before it."""
        db = DB if branch == "main" else f"{DB}@{branch.replace('/', '~')}"
        through, copy = self.argon[db][EXTRA[0]], self.direct[self.copies[branch]][EXTRA[0]]
        flt, upd = {"_id": doc["_id"]}, {"$set": {"a": doc["a"]}}
        results: list[Any] = []
        for coll in (through, copy):
            try:
                done = coll.update_one(flt, upd, upsert=True)
                results.append((done.matched_count, done.modified_count, done.upserted_id))
            except OperationFailure as exc:  # e.g. a unique index a rename brought along
                results.append(("error", exc.code))
        assert results[0] == results[1], branch

    @rule(name=st.sampled_from([COLL, *EXTRA, "the database"]))
    def drop_on_main(self, name: str) -> None:
        """Main drops a collection (or its whole database) while branches live: main
        loses it, every branch keeps its own, and main may create it again."""
        held = self.direct[self.copies["main"]].list_collection_names()
        if name == "the database":
            self.argon.drop_database(DB)
            self.direct.drop_database(self.copies["main"])
        else:
            self.argon[DB][name].drop()
            self.direct[self.copies["main"]][name].drop()
        if name in held or (name == "the database" and held):
            self.keep_horizon()  # dropping nothing changes nothing

    def keep_horizon(self) -> None:
        """Just after a drop or rename on main: with no branch (nor time-travel
        snapshot) to keep what it changed, time travel on main stops there, at the
        point the change took (the LSN ``status`` reports now). Points before it,
        the last one before the change included, are refused, never answered in
        part."""
        listed = self.argon.admin.command({"argon": "listBranches", "all": True})["branches"]
        if [b["name"] for b in listed] == ["main"]:  # no branch, no snapshot keeps it
            self.horizon = int(self.argon.admin.command({"argon": "status"})["lsn"])

    @rule(source=st.sampled_from([COLL, *EXTRA]), to=st.sampled_from([COLL, *EXTRA]))
    def rename_on_main(self, source: str, to: str) -> None:
        """Main renames a collection (over another) while branches live: main's takes
        the new name, every branch keeps its own under the old one."""
        copy = self.direct[self.copies["main"]]
        if source == to or source not in copy.list_collection_names():
            return
        for db in (self.argon[DB], copy):
            db[source].rename(to, dropTarget=True)
        self.keep_horizon()

    @rule(branch=branches, doc=documents)
    def protect_then_unprotect(self, branch: str, doc: dict[str, Any]) -> None:
        """A protected branch refuses writes on every proxy at once, reads as before,
        and takes writes again once the protection is lifted."""
        self.argon.admin.command({"argon": "protectBranch", "name": branch})
        try:
            with pytest.raises(OperationFailure) as refused:
                self.coll_on(branch).insert_one(dict(doc))  # the other proxy, in turn
            assert refused.value.code == PROTECTED_BRANCH, refused.value.details
            listed = self.argon.admin.command({"argon": "getBranch", "name": branch})
            assert listed["branch"]["protected"] is True
        finally:
            lift = {"argon": "protectBranch", "name": branch, "protected": False}
            self.argon.admin.command(lift)

    @rule()
    def reload_catalog(self) -> None:
        """Anything that reloads the catalog (``argon branch list``) changes no answer."""
        self.argon.admin.command({"argon": "listBranches"})

    @precondition(lambda self: bool(RESTART) and self.restarts < 1)
    @rule()
    def restart_proxies(self) -> None:
        """A restart keeps every acknowledged write and changes no answer."""
        self.restarts += 1
        RESTART[0]()

    @precondition(lambda self: len(self.copies) > 1)
    @invariant()
    def other_collections_equal_their_copies(self) -> None:
        for branch in self.copies:
            db = DB if branch == "main" else f"{DB}@{branch.replace('/', '~')}"
            names = set(self.argon[db].list_collection_names()) & set(EXTRA)
            copy = self.direct[self.copies[branch]]
            assert names == set(copy.list_collection_names()) & set(EXTRA), branch
            for extra in EXTRA:
                got = list(self.argon[db][extra].find({}, sort=[("_id", 1)]))
                assert got == list(copy[extra].find({}, sort=[("_id", 1)])), (branch, extra)

    @precondition(lambda self: len(self.copies) > 1)
    @invariant()
    def every_branch_equals_its_copy(self) -> None:
        for branch in self.copies:
            got = list(self.coll_on(branch).find({}, sort=[("_id", 1)]))
            want = list(self.copy_of(branch).find({}, sort=[("_id", 1)]))
            assert got == want, branch

    def teardown(self) -> None:
        for branch in sorted(self.parents, key=lambda b: -b.count("/")):
            self.argon.admin.command({"argon": "deleteBranch", "name": branch})
        listed = self.argon.admin.command({"argon": "listBranches", "all": True})["branches"]
        for info in listed:
            if "@" in info["name"]:  # snapshots of main made by read_the_past
                self.argon.admin.command({"argon": "deleteBranch", "name": info["name"]})
        for copy in self.copies.values():
            self.direct.drop_database(copy)
        self.direct.drop_database(DB)


def _run_model(examples: int) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        BranchModel,
        settings=settings(
            max_examples=int(os.environ.get("MODEL_EXAMPLES", str(examples))),
            stateful_step_count=25,
            deadline=None,
            phases=PHASES,
            suppress_health_check=list(HealthCheck),
        ),
    )


def _restartable(up: Process, proxies: list[Process], names: list[str]) -> Callable[[], None]:
    """A restart of every proxy in ``proxies`` (new processes on the same upstream)."""

    def restart() -> None:
        for index, name in enumerate(names):
            # The client first: closing it ends its sessions on a proxy still there
            # (after the proxy, pymongo waits out server selection to try).
            CLIENTS.pop(name).close()
            proxies[index].stop()
            proxies[index] = _proxy(f"mongodb://127.0.0.1:{up.port}")
            CLIENTS[name] = MongoClient(proxies[index].uri, event_listeners=[SENT])

    return restart


@pytest.mark.timeout(900)  # many examples, each a few dozen round trips
def test_branches_behave_like_physical_copies(stack: tuple[Process, Process]) -> None:
    up, proxy = stack
    proxies = [proxy]
    CLIENTS["argon"] = MongoClient(proxy.uri, event_listeners=[SENT])
    CLIENTS["direct"] = MongoClient(up.uri)
    RESTART.append(_restartable(up, proxies, ["argon"]))
    try:
        _run_model(25)
    finally:
        RESTART.clear()
        CLIENTS.pop("argon").close()
        CLIENTS.pop("direct").close()
        if proxies[0] is not proxy:
            proxies[0].stop()


@pytest.mark.timeout(900)  # many examples, each a few dozen round trips
def test_branches_behave_like_physical_copies_across_two_proxies() -> None:
    """The same model with every operation sent to one of two proxies in turn, both
    in front of one upstream: neither may answer from an outdated picture."""
    up = start_upstream()
    uri = f"mongodb://127.0.0.1:{up.port}"
    proxies = [_proxy(uri) for _ in range(2)]
    CLIENTS["argon"] = MongoClient(proxies[0].uri, event_listeners=[SENT])
    CLIENTS["argon2"] = MongoClient(proxies[1].uri, event_listeners=[SENT])
    CLIENTS["direct"] = MongoClient(up.uri)
    try:
        _run_model(10)
    finally:
        for name in ("argon", "argon2", "direct"):
            CLIENTS.pop(name).close()
        for proc in proxies:
            proc.stop()
        up.stop()
