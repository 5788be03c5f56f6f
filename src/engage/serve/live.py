"""Live sessions: a browser's camera sends frames one at a time; each session keeps only its face tracker and
smoothing state (engage.inference.predictor.FaceStream), never a frame, and is forgotten when idle."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from engage.inference.predictor import FaceStream


@dataclass
class LiveSession:
    id: str
    stream: FaceStream
    started: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one frame of a session at a time

    def clock(self) -> float:
        """Seconds since the session started: a frame's time, as a camera frame is timed by the wall clock."""
        self.last_used = time.monotonic()
        return self.last_used - self.started


class LiveSessions:
    """At most `max_sessions` at once; a session unused for `idle_s` seconds is dropped."""

    def __init__(self, smoothing_s: float = 1.0, max_sessions: int = 16, idle_s: float = 60.0):
        self.smoothing_s = smoothing_s
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self._sessions: dict[str, LiveSession] = {}
        self._lock = threading.Lock()

    def _expire(self) -> None:
        now = time.monotonic()
        for session_id in [s.id for s in self._sessions.values() if now - s.last_used > self.idle_s]:
            del self._sessions[session_id]

    def open(self) -> LiveSession | None:
        """A new session, or None when there are already max_sessions."""
        with self._lock:
            self._expire()
            if len(self._sessions) >= self.max_sessions:
                return None
            session_id = secrets.token_hex(16)
            session = LiveSession(session_id, FaceStream("live", self.smoothing_s))
            self._sessions[session_id] = session
            return session

    def get(self, session_id: str) -> LiveSession | None:
        with self._lock:
            self._expire()
            return self._sessions.get(session_id)

    def close(self, session_id: str) -> bool:
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def count(self) -> int:
        with self._lock:
            self._expire()
            return len(self._sessions)
