"""Decision notifications to a Slack-compatible incoming webhook, sent in the background with retries.

The payload holds the gate, the revision, the decision and its reason: never a credential (the
webhook URL itself is a secret and is neither logged nor echoed in errors).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger("robustness_gate.notify")
_COLORS = {"Promote": "#2eb886", "Rollback": "#e01e5a", "Inconclusive": "#ecb22e"}


@dataclass(frozen=True)
class Notice:
    namespace: str
    gate: str
    revision: str | None
    action: str
    operation: str
    dry_run: bool
    score: float | None
    reason: str

    def payload(self) -> dict[str, Any]:
        """Slack's `text` plus one attachment with the fields; other chat tools read `text`."""
        verb = f"{'would ' if self.dry_run else ''}{self.operation}" if self.operation != "None" else "no operation"
        text = f"robustness-gate {self.namespace}/{self.gate}: canary {self.revision} {self.action} ({verb})"
        fields = [
            {"title": "gate", "value": f"{self.namespace}/{self.gate}", "short": True},
            {"title": "revision", "value": str(self.revision), "short": True},
            {"title": "decision", "value": f"{self.action} → {verb}", "short": True},
            {"title": "score", "value": "-" if self.score is None else f"{self.score:g}", "short": True},
            {"title": "reason", "value": self.reason, "short": False},
        ]
        return {"text": text, "attachments": [{"color": _COLORS.get(self.action, "#888888"), "fields": fields}]}


class WebhookNotifier:
    """Posts notices from a queue in one background thread; a slow webhook never slows analysis."""

    def __init__(self, url: str, attempts: int = 4, backoff_seconds: float = 1.0, timeout_seconds: float = 5.0) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[Notice | None] = queue.Queue(maxsize=1000)
        self._thread = threading.Thread(target=self._run, name="webhook-notifier", daemon=True)
        self._thread.start()

    def __call__(self, notice: Notice) -> None:
        try:
            self._queue.put_nowait(notice)
        except queue.Full:
            self.failed += 1
            log.warning("notification queue full; dropped the notice for %s/%s", notice.namespace, notice.gate)

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        session = requests.Session()
        while True:
            notice = self._queue.get()
            if notice is None:
                return
            if self._post(session, notice):
                self.sent += 1
            else:
                self.failed += 1

    def _post(self, session: requests.Session, notice: Notice) -> bool:
        where = f"{notice.namespace}/{notice.gate}"
        for attempt in range(1, self.attempts + 1):
            problem = ""
            try:
                response = session.post(self.url, json=notice.payload(), timeout=self.timeout_seconds)
                if response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # a client error does not get better by retrying
            except requests.RequestException as error:
                problem = type(error).__name__  # the message would contain the (secret) URL
            log.warning("notification for %s failed (attempt %d/%d): %s", where, attempt, self.attempts, problem)
            if attempt < self.attempts:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        log.error("notification for %s dropped after %d attempts", where, self.attempts)
        return False
