"""Other real clients through Argon: pymongo's async client, mongosh and the Node driver."""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap

import pytest
from pymongo import AsyncMongoClient

from ..processes import CLIENTS, Process

MONGOSH = CLIENTS / ".bin" / "mongosh"


def _node_available() -> bool:
    return (CLIENTS / "mongodb").exists() and MONGOSH.exists()


needs_node = pytest.mark.skipif(not _node_available(), reason="run `make install` for Node clients")


def test_pymongo_async_client(proxy: Process) -> None:
    asyncio.run(_async_client_flow(proxy))  # pymongo's async client runs on asyncio


async def _async_client_flow(proxy: Process) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(proxy.uri)
    try:
        coll = client.async_db.items
        await coll.drop()
        await coll.insert_many([{"i": i} for i in range(50)])
        assert await coll.count_documents({"i": {"$gte": 25}}) == 25
        docs = [d["i"] async for d in coll.find({}, batch_size=4).sort("i", -1)]
        assert docs == list(range(49, -1, -1))
        async with client.start_session() as session, await session.start_transaction():
            await coll.delete_many({"i": {"$lt": 10}}, session=session)
        assert await coll.count_documents({}) == 40
    finally:
        await client.close()


@needs_node
def test_mongosh_eval(proxy: Process) -> None:
    script = textwrap.dedent(
        """
        db.getSiblingDB('mongosh_db').dropDatabase();
        const c = db.getSiblingDB('mongosh_db').things;
        c.insertMany([{n: 1}, {n: 2}, {n: 3}]);
        c.updateOne({n: 2}, {$set: {tag: 'two'}});
        const out = {
          count: c.countDocuments({}),
          tagged: c.findOne({tag: 'two'}).n,
          sum: c.aggregate([{$group: {_id: null, s: {$sum: '$n'}}}]).toArray()[0].s,
          hello: db.hello().isWritablePrimary,
        };
        print(JSON.stringify(out));
        """
    )
    done = subprocess.run(
        [str(MONGOSH), f"mongodb://127.0.0.1:{proxy.port}/", "--quiet", "--norc", "--eval", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"count": 3, "tagged": 2, "sum": 6, "hello": True}


@needs_node
def test_node_driver(proxy: Process, tmp_path: object) -> None:
    script = textwrap.dedent(
        f"""
        const {{ MongoClient }} = require('mongodb');
        (async () => {{
          const client = new MongoClient('mongodb://127.0.0.1:{proxy.port}/',
                                         {{ compressors: ['zlib'] }});
          await client.connect();
          const coll = client.db('node_db').collection('col');
          await coll.deleteMany({{}});
          await coll.insertMany(Array.from({{length: 300}}, (_, i) => ({{ i }})));
          const seen = await coll.find({{}}, {{ batchSize: 11 }}).sort({{ i: 1 }}).toArray();
          const session = client.startSession();
          await session.withTransaction(async () => {{
            await coll.updateOne({{ i: 0 }}, {{ $set: {{ first: true }} }}, {{ session }});
          }});
          await session.endSession();
          const first = await coll.findOne({{ first: true }});
          let bulkError = null;
          try {{
            await coll.insertMany([{{ _id: 1 }}, {{ _id: 1 }}], {{ ordered: true }});
          }} catch (e) {{ bulkError = e.code; }}
          console.log(JSON.stringify({{ n: seen.length, last: seen[299].i,
                                        first: first.i, bulkError }}));
          await client.close();
        }})().catch((e) => {{ console.error(e); process.exit(1); }});
        """
    )
    done = subprocess.run(
        ["node", "-e", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=CLIENTS.parent,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "n": 300,
        "last": 299,
        "first": 0,
        "bulkError": 11000,
    }
