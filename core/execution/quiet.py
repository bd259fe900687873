"""Keep Paddle's internal log lines away from users.

Paddle's C++ side writes glog lines straight to file descriptor 2 while a Layer is traced and a
program is loaded, e.g. "W1207 14:11:35.509047 12994 eager_utils.cc:3584] Paddle static
graph(PIR) not support input out tensor for now!!!!!": nothing a user can act on, and
`Config.disable_glog_info()` does not cover them. `native_stderr_filtered()` points fd 2 at a
temporary file while its body runs and then writes back everything that is not such a line, so
Python warnings and errors printed meanwhile still reach the user. $PADDIFF_PADDLE_LOGS=1 lets
Paddle's lines through (for debugging Paddle itself).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager

# glog's prefix: severity letter, MMDD, time, thread id, file:line]
GLOG_LINE = re.compile(rb"^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d+\s+\d+ [\w./-]+:\d+\]")
# Paddle's own non-glog chatter on the same paths
PADDLE_LINES = (
    re.compile(rb"^(I|W|E)?\s*\[?(Paddle|PIR|oneDNN|MKLDNN)\b.*"),
    re.compile(rb"^--- Running (analysis|IR pass).*"),
    re.compile(rb"^\x1b\[\d+m--- .*"),
)

_lock = threading.RLock()
_depth = 0


def paddle_line(line: bytes) -> bool:
    stripped = line.lstrip()
    return bool(GLOG_LINE.match(stripped)) or any(p.match(stripped) for p in PADDLE_LINES)


@contextmanager
def native_stderr_filtered():
    """Run the body with Paddle's native log lines dropped from stderr (nesting and threads
    share one redirection)."""
    global _depth
    if os.environ.get("PADDIFF_PADDLE_LOGS") == "1":
        yield
        return
    with _lock:
        _depth += 1
        first = _depth == 1
        if first:
            sys.stderr.flush()
            capture = tempfile.TemporaryFile()
            saved = os.dup(2)
            os.dup2(capture.fileno(), 2)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if first:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                kept = [line for line in capture.read().splitlines(True) if not paddle_line(line)]
                capture.close()
                if kept:
                    os.write(2, b"".join(kept))
