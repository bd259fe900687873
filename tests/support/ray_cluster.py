"""A real Ray head on loopback for the Ray tests (tests/batch/test_ray.py, test_serve_ray.py).

Every Ray process of these tests talks over 127.0.0.1 only. `--node-ip-address` alone does not
do it: Ray's workers and drivers look their address up "from the network's perspective" (the
machine's interface address) unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, which Ray reads to keep a
single-machine cluster on 127.0.0.1, is off. Importing this module sets it (and RAY_AUTH_MODE,
below) for this process and everything it starts.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.processes import free_port

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Ray 2.60 turns token authentication on for a `ray start` head when ~/.ray/auth_token exists (a
# local `ray.init()` elsewhere writes one), while `ray status` sends no token unless the mode is
# set: the head would never look ready. These clusters are loopback-only and private to a test.
os.environ["RAY_AUTH_MODE"] = "disabled"
RAY = str(Path(sys.executable).parent / "ray")


def process_table() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of every process we can read."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                table[int(entry.name)] = (
                    int(stat.rsplit(")", 1)[1].split()[1]),
                    (entry / "cmdline").read_bytes(),
                )
            except OSError:
                pass
    return table


def processes_with(text: str) -> list[int]:
    return [pid for pid, (_, command) in process_table().items() if text.encode() in command]


def descendants(roots: set[int]) -> set[int]:
    """`roots` and every process they started, at any depth."""
    table = process_table()
    found = set(roots) & set(table)
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in table.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found


def cluster_processes(folder: str) -> set[int]:
    """The head's processes (their command lines name its temporary folder) and everything they
    started (Ray renames its agents' command lines, so those are found by parentage)."""
    table = process_table()
    return descendants({pid for pid, (_, command) in table.items() if folder.encode() in command})


def tcp_addresses(pids: set[int]) -> set[str]:
    """Local and remote addresses (IPv4 and IPv6) of the TCP sockets the processes `pids` hold
    open (/proc/net/tcp and tcp6, matched to the processes by socket inode)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            pass
    addresses = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                for endpoint in fields[1:3]:
                    addresses.add(str(_address(endpoint.split(":")[0])))
    return addresses


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp* prints it: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def only_loopback(addresses: set[str]) -> bool:
    """True when every address is loopback or a wildcard (a socket listening on every address,
    as Ray Serve's replicas do for their internal gRPC port; no connection uses the interface)."""
    return all(
        ipaddress.ip_address(a).is_loopback or ipaddress.ip_address(a).is_unspecified
        for a in addresses
    )


@contextmanager
def local_ray_head(cpus: int = 2) -> Iterator[tuple[str, str]]:
    """(address, temporary folder) of a Ray head on 127.0.0.1 with `cpus` CPUs, stopped
    afterwards (its processes are found by its folder, so no other Ray on the machine is
    touched)."""
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a limit
    port = free_port()
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-cpus",
            str(cpus),
            "--include-dashboard",
            "false",
            "--temp-dir",
            folder,
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            status = subprocess.run([RAY, "status", "--address", address], capture_output=True)
            if status.returncode == 0:
                break
            assert head.poll() is None, "ray start failed"
            assert time.monotonic() < deadline, "the Ray head did not come up"
            time.sleep(1)
        yield address, folder
    finally:
        started = cluster_processes(folder)
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        for pid in started & set(process_table()):  # anything the head left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
