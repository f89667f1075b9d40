"""The drain's own logic: idle sessions close at once, busy ones when their answer ends, and
the timeout bounds the wait (the real process under SIGTERM: tests/integration/test_replicas.py)."""

import asyncio

from orchestrator.drain import WS_SERVICE_RESTART, Drain


class FakeSocket:
    def __init__(self):
        self.closed_with = None

    async def close(self, code, reason):
        self.closed_with = (code, reason)


def test_idle_sessions_close_at_once_and_busy_ones_when_their_answer_ends():
    async def scenario():
        drain = Drain(timeout_s=5)
        idle, talking = FakeSocket(), FakeSocket()
        answering = {"now": True}
        with drain.track(idle, lambda: False), drain.track(talking, lambda: answering["now"]):
            task = asyncio.create_task(drain.run())
            await asyncio.sleep(0.2)
            assert drain.started and idle.closed_with[0] == WS_SERVICE_RESTART and talking.closed_with is None
            answering["now"] = False  # the answer ended
            await asyncio.wait_for(task, 2)
        return talking, drain

    talking, drain = asyncio.run(scenario())
    assert talking.closed_with[0] == WS_SERVICE_RESTART and drain.open_sessions == 0


def test_the_timeout_bounds_the_wait_for_an_answer_that_does_not_end():
    async def scenario():
        drain = Drain(timeout_s=0.2)
        stuck = FakeSocket()
        with drain.track(stuck, lambda: True):
            began = asyncio.get_running_loop().time()
            await drain.run()
            return stuck, asyncio.get_running_loop().time() - began

    stuck, waited = asyncio.run(scenario())
    assert stuck.closed_with[0] == WS_SERVICE_RESTART and waited < 2
