"""One retry policy for the servers segen reaches over the network (an MLflow server, a DVC
remote): a few tries with doubling pauses, then a ServerUnavailable that names the server
and says how to bring it back, short enough to print at the command line.

The policy is TRIES tries; after a failed try k the pause is 0 s for k = 1 (a dropped
connection is often fine at once) and BACKOFF_S * 2**(k-1) after, so the defaults (5 tries,
1 s) pause 0 + 2 + 4 + 8 = 14 s in all: long enough for a server restart, short enough for a
user at a terminal. These are urllib3's pauses, which MLflow's HTTP client uses, so the same
policy can be handed to MLflow (segen.tracking) and run here for DVC (call_with_retries).

SEGEN_RETRY_TRIES and SEGEN_RETRY_BACKOFF_S (whole seconds, as MLflow takes them; 0 retries
at once) override the defaults, e.g. in tests or for a server that takes long to restart.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from segen.redact import redact

log = logging.getLogger("segen.retry")
T = TypeVar("T")

TRIES = 5
BACKOFF_S = 1


@dataclass(frozen=True)
class Policy:
    tries: int
    backoff_s: int

    def pauses(self) -> list[float]:
        """The pause after each failed try but the last (urllib3's backoff)."""
        return [0.0 if k == 1 else float(self.backoff_s * 2 ** (k - 1))
                for k in range(1, self.tries)]


def policy() -> Policy:
    """The policy now in force (the environment's overrides read on each call)."""
    tries = int(os.environ.get("SEGEN_RETRY_TRIES", TRIES))
    backoff = int(os.environ.get("SEGEN_RETRY_BACKOFF_S", BACKOFF_S))
    if tries < 1 or backoff < 0:
        raise ValueError(f"SEGEN_RETRY_TRIES must be >= 1 and SEGEN_RETRY_BACKOFF_S >= 0; "
                         f"got {tries} and {backoff}")
    return Policy(tries, backoff)


@dataclass(frozen=True)
class Server:
    """A server as the user knows it: what it is, where, and how to bring it back."""
    kind: str  # e.g. "MLflow server"
    uri: str
    fix: str  # e.g. "start it (mlflow server ...) or set mlflow.tracking_uri"


class ServerUnavailable(RuntimeError):
    """A server did not answer within the retry policy. The message is the whole story (no
    traceback needed): which server, how long segen tried, how to bring it back."""

    def __init__(self, server: Server, tries: int, seconds: float, cause: str = ""):
        self.server, self.tries, self.seconds = server, tries, seconds
        detail = f" (last error: {cause})" if cause else ""
        # redacted: the URI (or an error quoting it) may carry user:password@ or a token
        super().__init__(redact(f"the {server.kind} at {server.uri} did not answer after "
                                f"{tries} tries over {seconds:.0f} s{detail}: {server.fix}"))


def call_with_retries(call: Callable[[], T], server: Server,
                      transient: Callable[[Exception], bool]) -> T:
    """call(), tried again under the policy while it fails with a transient error (the
    server's fault); a non-transient error is raised at once. Only for idempotent calls."""
    rules, start = policy(), time.monotonic()
    for pause in [*rules.pauses(), None]:
        try:
            return call()
        except Exception as err:
            if not transient(err):
                raise
            if pause is None:
                raise ServerUnavailable(server, rules.tries, time.monotonic() - start,
                                        short(err)) from err
            log.warning("the %s at %s failed (%s); trying again in %.0f s", server.kind,
                        redact(server.uri), redact(short(err)), pause)
            time.sleep(pause)
    raise AssertionError("unreachable: the last try returns or raises")


def short(err: BaseException, limit: int = 160) -> str:
    """One line of an error, for a message meant for a terminal."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
