"""The LLM step scheduler's decisions, on a fake clock (voicebot/engines/schedule.py)."""

import threading
import time

from voicebot.engines.schedule import (
    FIRST_CLAUSE_S,
    IDLE_SLACK_S,
    MARGIN_S,
    StepScheduler,
    Ticket,
    choose,
    first_clause_done,
)

PACE = 15.0  # characters per second a listener hears


def test_first_clause_is_what_the_pipeline_would_speak_already():
    assert not first_clause_done("The lamp")
    assert not first_clause_done("Yes, it")  # a comma after one word is no clause yet
    assert first_clause_done("Yes. Paris")  # a sentence end is, however short
    assert first_clause_done("The lamp charges in three hours, ")
    assert first_clause_done("The lamp charges fully.")
    assert first_clause_done("one two three four five six seven eight nine")
    assert not first_clause_done("one two three four five six seven")


def test_deadline_before_and_after_the_first_clause():
    t = Ticket(arrival=10.0, pace_cps=PACE)
    assert t.deadline(now=10.2) == 10.0 + FIRST_CLAUSE_S
    t.wrote("The lamp charges in three hours,", now=10.4)
    assert t.first_clause_at == 10.4
    # The listener hears len(text)/pace seconds from the first clause on; due a margin before.
    assert abs(t.deadline(now=10.5) - (10.4 + len(t.text) / PACE - MARGIN_S)) < 1e-9


def test_a_new_question_goes_before_an_answer_with_audio_queued():
    talking = Ticket(arrival=0.0, pace_cps=PACE)
    talking.wrote("The lamp charges in three hours over USB-C and runs for twelve hours,", now=0.5)
    new = Ticket(arrival=1.0, pace_cps=PACE)
    assert choose([talking, new], now=1.0) is new


def test_an_answer_about_to_run_out_goes_before_a_new_question():
    talking = Ticket(arrival=0.0, pace_cps=PACE)
    talking.wrote("The lamp charges fully,", now=0.5)  # 1.5 s of speech from 0.5 s on
    new = Ticket(arrival=1.6, pace_cps=PACE)
    assert choose([talking, new], now=1.7) is talking


def test_speculation_runs_only_while_every_answer_has_slack():
    spec = Ticket(arrival=0.0, speculative=True)
    answer = Ticket(arrival=0.0, pace_cps=PACE)
    answer.wrote("word " * 30, now=1.0)  # ten seconds of speech from 1.0 s
    assert choose([spec, answer], now=2.0) is spec
    assert choose([spec, answer], now=11.0 - IDLE_SLACK_S) is answer
    assert choose([spec, Ticket(arrival=2.0)], now=2.0) is not spec


def test_ties_go_to_the_first_come():
    a, b = Ticket(arrival=1.0), Ticket(arrival=1.0)
    assert choose([b, a], now=1.0) is a
    assert choose([], now=0.0) is None


def simulate(arrivals, answer_chars, policy, token_s=0.02, prompt_s=0.3, chars_per_token=4):
    """A fake-clock run of one engine: each request needs a prompt step of ``prompt_s`` then
    tokens of ``token_s`` each. ``policy`` picks among the ready tickets. Returns, per request,
    (first clause time after arrival, underruns: times the listener ran out of speech)."""
    now = 0.0
    tickets = [Ticket(arrival=t, pace_cps=PACE) for t in arrivals]
    prompted = set()
    played_to = {}
    underruns = dict.fromkeys(range(len(tickets)), 0)
    first = {}
    while True:
        ready = [t for t in tickets if t.arrival <= now and len(t.text) < answer_chars]
        if not ready:
            pending = [t.arrival for t in tickets if t.arrival > now]
            if not pending:
                break
            now = min(pending)
            continue
        t = policy(ready, now)
        i = tickets.index(t)
        if i not in prompted:
            prompted.add(i)
            now += prompt_s
            continue
        now += token_s
        had_clause = t.first_clause_at is not None
        t.wrote("word" + (", " if len(t.text) % 40 > 30 else " "), now)
        if t.first_clause_at is not None and not had_clause:
            first[i] = now - t.arrival
            played_to[i] = now + len(t.text) / PACE
        elif had_clause:
            # Speech plays from the first clause on; running dry before this text came is an underrun.
            if now > played_to[i] + 1e-9:
                underruns[i] += 1
            played_to[i] = max(played_to[i], now) + chars_per_token / PACE
    return first, underruns


def fcfs(ready, now):
    return min(ready, key=lambda t: (t.arrival, t.order))


def test_deadline_first_serves_four_listeners_without_gaps_where_first_come_cannot():
    arrivals = [0.0, 0.05, 0.1, 0.15]
    edf_first, edf_under = simulate(arrivals, 300, choose)
    fcfs_first, _ = simulate(arrivals, 300, fcfs)
    assert sum(edf_under.values()) == 0
    # First come, first served: the fourth listener waits for three whole answers.
    assert fcfs_first[3] > 3 * 75 * 0.02
    assert max(edf_first.values()) < 2.0 < fcfs_first[3]
    assert max(edf_first.values()) < max(fcfs_first.values()) / 2


def test_scheduler_grants_the_earliest_deadline_among_waiting_threads():
    now = [0.0]
    sched = StepScheduler(clock=lambda: now[0])
    holder = Ticket(arrival=0.0)
    assert sched.acquire(holder)
    order = []
    late = Ticket(arrival=0.0, speculative=True)
    early = Ticket(arrival=0.1)

    def take(ticket, name):
        if sched.acquire(ticket):
            order.append(name)
            sched.release(ticket)

    threads = [
        threading.Thread(target=take, args=(late, "speculative")),
        threading.Thread(target=take, args=(early, "answer")),
    ]
    for th in threads:
        th.start()
    while sched.waiting < 2:
        time.sleep(0.005)
    sched.release(holder)
    for th in threads:
        th.join(5)
    assert order == ["answer", "speculative"]
    assert sched.steps == 3


def test_a_cancelled_wait_gives_no_step_and_leaves_the_queue():
    sched = StepScheduler(clock=lambda: 0.0)
    holder = Ticket(arrival=0.0)
    assert sched.acquire(holder)
    assert sched.acquire(Ticket(arrival=0.0), cancelled=lambda: True) is False
    assert sched.waiting == 0
    sched.release(holder)
    with sched.step(Ticket(arrival=1.0)) as granted:
        assert granted


def test_the_holder_batches_tokens_only_while_the_waiting_are_not_yet_due():
    now = [0.0]
    sched = StepScheduler(clock=lambda: now[0])
    holder = Ticket(arrival=0.0)
    assert sched.acquire(holder)
    assert not sched.batch_more()  # nobody waits: release after each token, nothing to save

    def take():
        ticket = Ticket(arrival=0.0)
        if sched.acquire(ticket):
            sched.release(ticket)

    other = threading.Thread(target=take)
    other.start()
    while sched.waiting < 1:
        time.sleep(0.005)
    assert sched.batch_more()  # the new question is due at 0.5 s
    now[0] = FIRST_CLAUSE_S + 0.01
    assert not sched.batch_more()  # now it is overdue: hand over
    sched.release(holder)
    other.join(5)
    assert sched.switches == 2
