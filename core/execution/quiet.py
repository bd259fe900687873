"""Keep Paddle's internal log lines away from users.

Paddle's C++ side writes glog lines straight to file descriptor 2 while a Layer is traced and a
program is loaded, e.g. "W1207 14:11:35.509047 12994 eager_utils.cc:3584] Paddle static
graph(PIR) not support input out tensor for now!!!!!": nothing a user can act on, and
`Config.disable_glog_info()` does not cover them. `native_stderr_filtered()` points fd 2 at a
temporary file while its body runs and then writes back everything that is not such a line, so
Python warnings and errors printed meanwhile still reach the user; `native_output_filtered`
does the same for any descriptor (paddle2onnx prints its progress to stdout).
$PADDIFF_PADDLE_LOGS=1 lets Paddle's lines through (for debugging Paddle itself).
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

# paddle2onnx's progress lines, printed to stdout by its C++ side and its Python logger
PADDLE2ONNX_LINES = (
    re.compile(rb"^\[Paddle2ONNX\].*"),
    re.compile(rb"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \[INFO\]\s+ONNX model saved in .*"),
)

_lock = threading.RLock()
_depth = {}  # file descriptor -> nesting depth of its redirection


def paddle_line(line: bytes) -> bool:
    stripped = line.lstrip()
    return bool(GLOG_LINE.match(stripped)) or any(p.match(stripped) for p in PADDLE_LINES)


def paddle2onnx_line(line: bytes) -> bool:
    return any(p.match(line.lstrip()) for p in PADDLE2ONNX_LINES)


def native_stderr_filtered():
    """Run the body with Paddle's native log lines dropped from stderr (nesting and threads
    share one redirection)."""
    return native_output_filtered(2, paddle_line)


@contextmanager
def native_output_filtered(fd: int, noise):
    """Run the body with the lines for which `noise(line)` holds dropped from file descriptor
    `fd` (1: stdout, 2: stderr); the rest is written back when the body ends."""
    if os.environ.get("PADDIFF_PADDLE_LOGS") == "1":
        yield
        return
    stream = sys.stdout if fd == 1 else sys.stderr
    with _lock:
        _depth[fd] = _depth.get(fd, 0) + 1
        first = _depth[fd] == 1
        if first:
            stream.flush()
            capture = tempfile.TemporaryFile()
            saved = os.dup(fd)
            os.dup2(capture.fileno(), fd)
            if fd == 1:  # Python's print() too, wherever sys.stdout points (pytest, a pipe)
                sys.stdout = open(fd, "w", encoding="utf-8", closefd=False, buffering=1)
    try:
        yield
    finally:
        with _lock:
            _depth[fd] -= 1
            if first:
                if fd == 1:
                    sys.stdout.close()
                    sys.stdout = stream
                stream.flush()
                os.dup2(saved, fd)
                os.close(saved)
                capture.seek(0)
                kept = [line for line in capture.read().splitlines(True) if not noise(line)]
                capture.close()
                if kept:
                    os.write(fd, b"".join(kept))
