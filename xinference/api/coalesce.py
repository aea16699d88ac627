"""Merges concurrent small calls to one replica into one remote call.

Thirty-two clients that each embed one sentence make thirty-two actor calls, and each
call's round trip (serialise, send, dispatch, answer) costs the REST process and the
replica CPU that the model needs. Calls to the same replica that are ready in the same
turn of the event loop go as one call to the replica's `*_many` method instead; the
replica still batches across calls (model/batching.py), so nothing waits here.
"""

import asyncio
from typing import Any, Dict, List, Tuple

from .replicas import Replica

Pending = List[Tuple[Tuple[Any, ...], asyncio.Future]]


class CallCoalescer:
    def __init__(self, method: str):
        self.method = method  # the replica method that takes a list of argument tuples
        self._pending: Dict[Tuple[str, str], Tuple[Replica, Pending]] = {}

    async def call(self, replica: Replica, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        key = (replica.address, replica.replica_uid)
        future = loop.create_future()
        entry = self._pending.get(key)
        if entry is None:
            self._pending[key] = (replica, [(args, future)])
            loop.call_soon(self._flush, key)
        else:
            entry[1].append((args, future))
        return await future

    def _flush(self, key: Tuple[str, str]) -> None:
        replica, calls = self._pending.pop(key)
        live = [(args, fut) for args, fut in calls if not fut.done()]
        if live:
            asyncio.ensure_future(self._send(replica, live))

    async def _send(self, replica: Replica, calls: Pending) -> None:
        try:
            results = await getattr(replica.handle, self.method)([args for args, _ in calls])
        except BaseException as e:  # the call itself failed: each caller sees why
            results = [e] * len(calls)
        for (_, fut), result in zip(calls, results):
            if fut.done():  # its client went away
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
