"""The end of a client's transaction: its WAL entries take their LSNs at commit.

Theory of operation: the statements of a client's transaction write their data
(and the pre-images children need) inside it, but leave their WAL entries in
its ``pending.TxnState`` without LSNs. ``commitTransaction`` gives them their
LSNs (a lease, see ``Catalog.allocate_lsns``) and writes them inside the
transaction just before the commit goes upstream; the lease is released once
the commit has answered. So the LSN counter is never held while the client
thinks, and the entries still commit or vanish with the data they describe.

A commit that finds the catalog changed since the transaction's statements
ran (a branch forked, another proxy changed overlays) fails as a transient
write conflict: the statements froze no pre-image into what they did not
know, so the transaction must run again, as drivers do on that label.
If writing the entries fails, the transaction is aborted and a later commit
of it fails as mongod's does for an aborted one: data never commits without
its entries.
"""

from __future__ import annotations

from .calls import Call, Forward, Reply
from .catalog import Catalog, StaleCatalog
from .errors import NO_SUCH_TRANSACTION, WRITE_CONFLICT, ArgonError
from .pending import Pending, TxnState
from .txn import JoinedTransaction
from .write_context import StaleTransaction
from .writes import Writer


class TransactionEnds:
    """``commitTransaction`` and ``abortTransaction`` of clients' transactions."""

    def __init__(self, catalog: Catalog, writer: Writer, pending: Pending) -> None:
        self.catalog = catalog
        self.writer = writer
        self.pending = pending

    async def commit(self, call: Call) -> Reply:
        """Write the transaction's WAL entries inside it, then forward the commit."""
        joined = call.joined
        state = self.pending.peek(joined) if isinstance(joined, JoinedTransaction) else None
        if state is None:
            return call.forward()
        assert isinstance(joined, JoinedTransaction)
        if state.failed:
            await joined.abort()
            raise _aborted(call)
        try:
            lease = await self.writer.log_commit(joined, state)
        except StaleCatalog:
            raise StaleTransaction(
                WRITE_CONFLICT,
                f"commitTransaction (branch {call.branch.name!r}): branches or collections "
                "changed while the transaction ran; the transaction must start again",
                labels=("TransientTransactionError",),
            ) from None
        except BaseException:
            state.failed = True
            raise
        if lease is not None:
            state.lease = lease
        if state.lease is None:
            return call.forward()
        return Forward(call.forward().command, after=lambda: self._released(state))

    async def abort(self, call: Call) -> Reply:
        """Forget the transaction's unwritten entries, then forward the abort."""
        joined = call.joined
        state = self.pending.peek(joined) if isinstance(joined, JoinedTransaction) else None
        if state is not None:
            state.entries.clear()
        return call.forward()

    async def _released(self, state: TxnState) -> None:
        """After the commit answered (committed or not): end the lease."""
        lease, state.lease = state.lease, None
        if lease is not None:
            await self.catalog.release_lsns(lease)


def _aborted(call: Call) -> ArgonError:
    return ArgonError(
        NO_SUCH_TRANSACTION,
        f"commitTransaction (branch {call.branch.name!r}): the transaction was aborted "
        "because its log entries could not be written",
        labels=("TransientTransactionError",),
    )
