"""What the REST process needs of a replica's actor, with xoscar kept inside.

The api layer talks to `ReplicaHandle`s and `RemoteStream`s and asks `unreachable`
whether an error means a lost replica; it never imports xoscar, so the actor system's
quirks (how a remote generator ends, how to bound a call a hung process never answers)
are handled here once.
"""

import logging
from typing import Any, Awaitable, Dict, List, Optional, Sequence, Tuple, TypeVar

import xoscar as xo
from xoscar.backends.message import _AsCauseBase
from xoscar.errors import ActorNotExist, ServerClosed

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What calling a replica whose process or worker went away raises here.
CONNECTION_ERRORS = (ServerClosed, ConnectionError, ActorNotExist, OSError)


def unreachable(e: BaseException) -> bool:
    """Whether `e` says the replica could not be reached (its process or worker gone,
    or its actor destroyed), as opposed to an error its engine raised and sent back:
    xoscar marks those (an engine's own FileNotFoundError is not a lost replica)."""
    if isinstance(e, (ServerClosed, ActorNotExist)):
        return True
    return isinstance(e, OSError) and not isinstance(e, _AsCauseBase)


async def bounded(call: Awaitable[T], timeout_s: float) -> T:
    """The call's answer, or asyncio.TimeoutError after `timeout_s`. xoscar's own
    wait_for, because a hung replica process never answers asyncio's cancellation."""
    return await xo.wait_for(call, timeout_s)


class RemoteStream:
    """A generator running in a replica: its deltas, one call each."""

    def __init__(self, it: Any):
        self._it = it

    def __aiter__(self) -> "RemoteStream":
        return self

    async def __anext__(self) -> Dict[str, Any]:
        return await self._it.__anext__()

    async def close(self) -> None:
        """Ends the remote generator now (aborting its decoding if it still runs).

        xoscar's iterator wrapper otherwise destroys the generator again from `__del__`,
        in a new thread that the collecting thread joins: that blocks this event loop
        for a round trip per finished stream, and hangs the process at exit when the
        replica is gone. Once we have destroyed it ourselves, that second destroy is
        switched off.
        """
        try:
            await self._it.destroy()
        except Exception as e:  # the replica may be gone already
            logger.debug("destroying a stream: %s", e)
        finally:
            self._it._gc_destroy = False


GenerationArgs = Tuple[str, Any, Dict[str, Any], Optional[Dict[str, Any]]]


class ReplicaHandle:
    """The ModelActor methods the REST layer calls, typed."""

    def __init__(self, ref: Any):
        self._ref = ref

    @classmethod
    async def connect(cls, address: str, replica_uid: str) -> "ReplicaHandle":
        """Raises one of CONNECTION_ERRORS when the replica's process cannot be reached."""
        return cls(await xo.actor_ref(address, replica_uid))

    async def stream(self, args: GenerationArgs) -> RemoteStream:
        """Opens a generation (kind, payload, sampling params, template kwargs)."""
        return RemoteStream(await self._ref.stream(*args))

    async def complete(self, args: GenerationArgs) -> Dict[str, Any]:
        """The whole answer (answers.Answers' result, with the replica's timings)."""
        return await self._ref.complete(*args)

    async def embed_many(self, jobs: Sequence[Tuple[Any, ...]]) -> List[Any]:
        return await self._ref.embed_many(list(jobs))

    async def rerank(self, *args: Any) -> Dict[str, Any]:
        return await self._ref.rerank(*args)

    async def describe(self, timeout_s: float) -> Dict[str, Any]:
        return await bounded(self._ref.describe(), timeout_s)
