"""wire.stream's bounds on a silent or broken Triton stream, with a stand-in gRPC stream (no Triton)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from voicebot import contract as c
from voicebot import wire
from voicebot.wire import CallError as ServiceError


class StandInStream:
    """What ``stream_infer`` returns: an async iterator of (result, error) with ``cancel()``."""

    def __init__(self, pieces: list[Any], then: BaseException | None = None, hang: bool = False) -> None:
        self.pieces, self.then, self.hang = list(pieces), then, hang
        self.cancelled = False

    def __aiter__(self) -> StandInStream:
        return self

    async def __anext__(self) -> Any:
        if self.pieces:
            return self.pieces.pop(0)
        if self.then is not None:
            raise self.then
        if self.hang:
            await asyncio.sleep(3600)
        raise StopAsyncIteration

    def cancel(self) -> None:
        self.cancelled = True


class StandInClient:
    def __init__(self, stream: StandInStream) -> None:
        self.stream = stream

    def stream_infer(self, requests: Any) -> StandInStream:
        return self.stream


def drain(stream: StandInStream, stall_s: float, first_s: float = 5.0) -> list[Any]:
    async def run() -> list[Any]:
        return [r async for r in wire.stream(StandInClient(stream), c.LLM, {}, [], "turn1", first_s, stall_s)]

    return asyncio.run(run())


def test_a_stream_that_goes_silent_fails_as_stalled_and_is_cancelled() -> None:
    stream = StandInStream([("first", None)], hang=True)
    began = time.monotonic()
    with pytest.raises(ServiceError) as caught:
        drain(stream, stall_s=0.3)
    assert caught.value.code == "upstream_stalled"
    assert 0.25 < time.monotonic() - began < 5
    assert stream.cancelled


def test_the_first_piece_may_wait_longer_than_the_gaps_between_pieces() -> None:
    # Queued behind other sessions: 0.5 s to the first piece is fine with a 2 s first-response bound,
    # even though the stall bound between pieces is 0.3 s.
    class SlowStart(StandInStream):
        async def __anext__(self) -> Any:
            if self.pieces and self.pieces[0][0] == "first":
                await asyncio.sleep(0.5)
            return await super().__anext__()

    assert drain(SlowStart([("first", None), ("second", None)]), stall_s=0.3, first_s=2.0) == ["first", "second"]
    with pytest.raises(ServiceError) as caught:
        drain(SlowStart([("first", None)]), stall_s=5, first_s=0.2)
    assert caught.value.code == "upstream_stalled"


def test_a_stream_that_breaks_is_upstream_unavailable() -> None:
    broken = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details="Socket closed"
    )
    stream = StandInStream([("first", None)], then=broken)
    with pytest.raises(ServiceError) as caught:
        drain(stream, stall_s=5)
    assert caught.value.code == "upstream_unavailable" and "UNAVAILABLE" in str(caught.value)
    assert stream.cancelled


def test_a_stream_that_ends_normally_yields_every_piece() -> None:
    stream = StandInStream([("a", None), ("b", None)])
    assert drain(stream, stall_s=5) == ["a", "b"]


def test_calls_are_spread_over_every_address_of_the_target_and_a_dead_one_takes_none() -> None:
    """Two gRPC servers that answer Triton's ServerLive (fakes: what is tested is the channel's
    balancing), one address with nothing behind it: one client target names all three."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from voicebot.serving.launcher import free_port

    class Live(service_pb2_grpc.GRPCInferenceServiceServicer):
        def __init__(self) -> None:
            self.calls = 0

        async def ServerLive(self, request: Any, context: Any) -> Any:  # the RPC is named so
            self.calls += 1
            return service_pb2.ServerLiveResponse(live=True)

    async def scenario() -> list[int]:
        servers, fakes = [], []
        ports = [free_port() for _ in range(3)]
        for port in ports[:2]:
            server, fake = grpc.aio.server(), Live()
            service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(fake, server)
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            servers.append(server)
            fakes.append(fake)
        client = wire.grpc_client("ipv4:" + ",".join(f"127.0.0.1:{p}" for p in (ports[2], *ports[:2])))
        try:
            for _ in range(40):
                assert await client.is_server_live()
        finally:
            await client.close()
            for server in servers:
                await server.stop(None)
        return [fake.calls for fake in fakes]

    calls = asyncio.run(scenario())
    assert sum(calls) == 40 and min(calls) >= 10, calls  # both served; the dead address failed nothing
