"""Helpers for tests about processes: servers and PaddleHub commands in their own processes, and
what a process holds in memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A port free on loopback now (the server started next binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def hub_command() -> list[str]:
    """The `hub` console script of this Python, else PaddleHub's entry point run by this Python."""
    script = Path(sys.executable).parent / "hub"
    if script.is_file():
        return [str(script)]
    entry = "import sys; from paddlehub.commands.utils import execute; sys.exit(execute())"
    return [sys.executable, "-c", entry]


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the process group of a process started with
    start_new_session=True (so what it forked, e.g. the web page's server, stops too)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue


def resident_bytes(path: Path) -> int:
    """Resident bytes of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    target = str(path.resolve())
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # a mapping's header
                inside = len(fields) == 6 and fields[5] == target
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total
