"""Budgets per identity (issue 18 items 7 and 8), attacked through a real `f2git serve`: one
student's held request bodies cost only that student, and one student's held requests never
lock out the others behind the same address (a hub's proxy, a NAT)."""
from __future__ import annotations

import resource
import time

import pytest

from f2git.config import ConfigError, parse
from f2git.server.budgets import BodyBudget, holder_of
from f2git.server.connections import EVICT_AFTER
from tests.heldrequests import MIB, answered, answers, git_env, hold, hold_requests, release, still_open
from tests.repohelpers import SourceFolder, git, git_environ, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serveprocess import ServeProcess, rss, write_config

ATTACKER, STUDENT = "attacker-secret-token-1", "student-secret-token-2"
HELD = 1000  # what one student held in the issue: the whole per-address cap
CLASS = 300  # students from one address at lecture start
LS_REFS = b"0014command=ls-refs\n0000"  # protocol v2 ls-remote: a small, valid body


@pytest.fixture(scope="module", autouse=True)
def enough_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HELD + CLASS + 200
    assert hard >= wanted, f"the attack needs {wanted} open files in the test process; the hard limit is {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def source(tmp_path) -> SourceFolder:
    folder = SourceFolder(tmp_path / "cs101")
    folder.write("week1/intro.ipynb", "intro\n")
    return folder


def serve(tmp_path, source, tokens: list[str], **server) -> ServeProcess:
    config = write_config(tmp_path / "f2git.toml",
                          {"data_dir": str(tmp_path / "data"), "auth": "token", "tokens_env": "F2GIT_TOKENS",
                           **server},
                          {"cs101": {"source": "local", "path": str(source.path), "schedule": 0}})
    return ServeProcess(config, env={"F2GIT_TOKENS": ",".join(tokens)})


def clone(server: ServeProcess, token: str, target) -> None:
    git("clone", "--depth", "1", server.git_url("cs101"), target, env=git_env(token, git_environ()))
    assert (target / "week1" / "intro.ipynb").read_text() == "intro\n"


def api_post(length: int, token: str | None = None) -> bytes:
    """The head of a POST whose body tornado reads before the handler authenticates anyone."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST /api/courses/cs101/refresh HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{auth}\r\n").encode()


def assert_secret_free(log: str, *tokens: str) -> None:
    for token in tokens:
        assert token not in log
    assert "Traceback" not in log, log[-3000:]


# -- item 7: bodies held at once ------------------------------------------------------------------

def test_one_students_held_bodies_cost_that_student_not_the_servers_memory(tmp_path, source):
    """1000 requests of one token, each body one byte short of 2 MiB (the per-request cap):
    before, the server grew by ~2 GiB and everyone behind the address got 503. Now that token
    holds its share (a sixteenth of max_request_bodies), its newer requests are refused, the
    server stays small and another student's clone works meanwhile."""
    with serve(tmp_path, source, [ATTACKER, STUDENT]) as server:
        clone(server, STUDENT, tmp_path / "warm")
        before = rss(server.pid)
        held = hold_requests(server.port, ATTACKER, HELD, course="cs101", body=2 * MIB)
        try:
            clone(server, STUDENT, tmp_path / "during")
            grown = rss(server.pid) - before
            # its 4 MiB share, plus read buffers of up to 64 KiB per connection; before: ~2 GiB
            assert grown < 100 * MIB, f"the server grew by {grown / MIB:.0f} MiB"
            assert len(answered(held, HELD - 2)) >= HELD - 2  # 4 MiB share: two bodies of 2 MiB - 1 byte
        finally:
            release(held)
        log = server.output()
    assert "refused a request body: f2git holds at most 4 MiB of unfinished request bodies per client" in log
    assert_secret_free(log, ATTACKER, STUDENT)


def test_a_full_budget_drops_the_biggest_holders_request_not_a_small_one(tmp_path, source):
    """Bodies read before anyone is authenticated (an API POST) are paid for by the credential
    they carry: twenty made-up credentials fill a 1 MiB budget with 60 KiB each; the biggest
    holders' requests are dropped with a 503 that says why, the total never passes the bound,
    and a student's clone, whose bodies are small, goes through."""
    with serve(tmp_path, source, [STUDENT], max_request_bodies=MIB) as server:
        held = []
        for number in range(20):
            held += hold(server.port, api_post(100 * 1024, f"made-up-{number}"), b"0", 1, sent=60 * 1024)
        try:
            clone(server, STUDENT, tmp_path / "clone")
            assert still_open(held) <= MIB // (60 * 1024)
            dropped = [answer for answer in answers(held, timeout=1) if answer]
            assert dropped and all(answer.startswith(b"HTTP/1.1 503") for answer in dropped)
            assert b"unfinished request bodies" in dropped[0]
        finally:
            release(held)
        assert_secret_free(server.output(), STUDENT)


class Request:
    """What BodyBudget sees of a request: who pays, and how it is refused."""

    def __init__(self, budget: BodyBudget, payer: str):
        self.budget, self.payer, self.refusal = budget, payer, None

    def refuse(self, message: str) -> None:
        self.refusal = message
        self.budget.release(self)


def test_the_body_budget_refuses_the_holders_newest_and_evicts_the_biggest():
    budget = BodyBudget(16 * 100)  # a share of 100 bytes
    mallory = [Request(budget, "token #m") for _ in range(2)]
    assert budget.charge(mallory[0], 60) is None
    assert "at most" in budget.charge(mallory[1], 60)  # over her share: her newest is refused
    others = [Request(budget, f"token #{n}") for n in range(16)]
    for request in others[:15]:
        assert budget.charge(request, 99) is None  # 60 + 15 * 99 = 1545 of 1600
    assert budget.charge(others[15], 60) is None  # full: the biggest holder's oldest request goes
    assert others[0].refusal and "token #0 holds the most" in others[0].refusal
    assert mallory[0].refusal is None and budget.total == 1545 - 99 + 60
    for request in [mallory[0], *others]:
        budget.release(request)
    assert budget.total == 0 and not budget.held and not budget.sums
    # a newcomer that would hold the most pays itself
    for request in others:
        request.refusal = None
        assert budget.charge(request, 99) is None  # 1584 of 1600
    assert "yours among the largest" in budget.charge(Request(budget, "token #new"), 100)
    assert not any(request.refusal for request in others) and budget.total == 1584


# -- item 8: connections per identity --------------------------------------------------------------

def test_one_token_holding_the_addresss_cap_locks_out_no_one_behind_that_address(tmp_path, source):
    """One token holds 1000 requests with complete headers and trickling bodies from 127.0.0.1
    (what configurable-http-proxy forwards): before, every other student from that address got
    503. Now authenticated requests count against their token, not the address: 300 students
    with their own tokens, from the same address, are all admitted at once and answered, and a
    real clone works."""
    students = [f"student-{number}-secret" for number in range(CLASS)]
    with serve(tmp_path, source, [ATTACKER, STUDENT, *students]) as server:
        clone(server, STUDENT, tmp_path / "warm")
        held = hold_requests(server.port, ATTACKER, HELD, course="cs101", body=1000, sent=10)
        try:
            assert still_open(held) == HELD  # the attacker keeps what it holds: the cost is its own
            clone(server, STUDENT, tmp_path / "clone")
            lecture = [sock for token in students
                       for sock in hold_requests(server.port, token, 1, course="cs101", body=LS_REFS)]
            assert still_open(lecture) == CLASS  # all admitted at once, none refused
            for sock in lecture:
                sock.sendall(LS_REFS[-1:])
            got = answers(lecture)
            assert all(answer.startswith(b"HTTP/1.1 200") and b"refs/heads/main" in answer for answer in got), \
                [answer[:200] for answer in got if not answer.startswith(b"HTTP/1.1 200")][:3]
        finally:
            release(held)
        log = server.output()
    assert "refusing more" not in log and "closing the one" not in log  # no one was turned away
    assert_secret_free(log, ATTACKER, STUDENT, *students[:5])


def test_one_identity_has_its_own_cap_and_is_told_so_without_its_token(tmp_path, source):
    with serve(tmp_path, source, [ATTACKER, STUDENT], max_connections_per_identity=5) as server:
        held = hold_requests(server.port, ATTACKER, 8, course="cs101", body=1000, sent=10)
        try:
            refused = answers(answered(held, 3))
            assert len(refused) == 3 and still_open(held) == 5
            assert all(answer.startswith(b"HTTP/1.1 503") for answer in refused)
            assert b"too many requests at once from token #" in refused[0]
            assert ATTACKER.encode() not in refused[0]
            clone(server, STUDENT, tmp_path / "clone")  # another token is not concerned
        finally:
            release(held)
        log = server.output()
    assert "max_connections_per_identity" in log
    assert_secret_free(log, ATTACKER, STUDENT)


def test_unauthenticated_requests_from_an_address_give_way_to_newcomers(tmp_path, source):
    """The address cap still bounds what is not authenticated, but cannot be used to lock an
    address out: API POSTs without a token whose bodies trickle (tornado reads a body before
    anyone is authenticated) are closed for newcomers once they waited half a second."""
    with serve(tmp_path, source, [STUDENT], max_connections_per_address=20) as server:
        held = hold(server.port, api_post(1000), b" ", 20, sent=10)
        try:
            time.sleep(2 * EVICT_AFTER)  # what a newcomer may replace has waited that long
            held += hold(server.port, api_post(1000), b" ", 5, sent=10)  # the address is full now
            time.sleep(2 * EVICT_AFTER)
            clone(server, STUDENT, tmp_path / "clone")
            assert still_open(held) < 20
        finally:
            release(held)
        log = server.output()
        assert "closing the one that waited longest" in log, log[-3000:]


def test_identities_are_named_without_their_secrets():
    assert holder_of("user", "alice", "hub-token-of-alice") == "hub user alice"  # all her tokens: one budget
    assert holder_of("service", "grader", "x") == "hub service grader"
    token = holder_of("token", "fetch token", ATTACKER)
    assert token.startswith("token #") and ATTACKER not in token
    assert token == holder_of("token", "fetch token", ATTACKER) != holder_of("token", "fetch token", STUDENT)
    assert holder_of("anonymous", "anonymous", "") is None  # stays on its address's budget


@pytest.mark.parametrize("key, value, message", [
    ("max_request_bodies", 0, "key 'max_request_bodies': must be a positive number"),
    ("max_connections_per_identity", -1, "key 'max_connections_per_identity': must not be negative"),
    ("max_request_bodies", "lots", "key 'max_request_bodies': expected an integer"),
])
def test_budget_keys_are_checked(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        parse({"server": {key: value}}, tmp_path / "f2git.toml", {})
