"""Pickled checkpoints that try to run code are refused, and nothing runs."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict

import pytest
from paddiff.safe_pickle import TORCH_LEGACY_MAGIC
from paddiff.weights import UnsafeCheckpointError, load_state_dict


class RunsCommand:
    """Unpickling this with the standard pickle module runs `command` in a shell."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('true')",))


def payload(marker, protocol=None) -> bytes:
    # The attack sits next to a harmless-looking entry, as it would in a real checkpoint.
    evil = OrderedDict(weight=[1.0, 2.0], evil=RunsCommand(f"touch {marker}"))
    return pickle.dumps(evil, protocol=protocol)


def torch_zip(path, pickled: bytes):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    return path


def legacy(path, pickled: bytes):
    header = b"".join(pickle.dumps(x) for x in (TORCH_LEGACY_MAGIC, 1001, {"little_endian": True}))
    path.write_bytes(header + pickled)
    return path


@pytest.mark.parametrize(
    "name, build",
    [
        ("plain.bin", lambda path, data: path.write_bytes(data)),
        ("model.ckpt", torch_zip),
        ("old.pt", legacy),
        ("model_state.pdparams", lambda path, data: path.write_bytes(data)),
        # protocol 0 opcodes are beyond the lazy scanner: the restricted unpickler decides
        ("protocol0.bin", lambda path, data: path.write_bytes(data)),
    ],
)
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, name, build):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    build(path, payload(marker, protocol=0 if name.startswith("protocol0") else None))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert str(path) in message
    assert "posix.system" in message or "os.system" in message
    assert "Nothing was executed" in message
    assert not marker.exists()


def test_the_payload_really_runs_under_plain_pickle(tmp_path):
    # Proves the test above would notice: the same bytes do run code with pickle.load.
    marker = tmp_path / "pwned"
    pickle.loads(payload(marker))
    assert marker.exists()


def test_eval_is_refused_too(tmp_path):
    path = torch_zip(tmp_path / "eval.ckpt", pickle.dumps({"x": CallsEval()}))
    with pytest.raises(UnsafeCheckpointError, match="builtins.eval"):
        load_state_dict(path)


def test_allowed_callables_cannot_be_modified_by_the_pickle(tmp_path):
    # BUILD on an allowed global tries to overwrite its attributes: refused, not applied.
    data = io.BytesIO()
    data.write(
        b"\x80\x02ccollections\nOrderedDict\n}X\x02\x00\x00\x00fnccollections\nOrderedDict\nsb."
    )
    path = torch_zip(tmp_path / "build.ckpt", data.getvalue())
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict(path)


def test_storage_types_cannot_be_altered_for_later_loads(tmp_path):
    # BUILD on torch.FloatStorage with {"dtype": "float16"} would change how every later file
    # reads float32 data if it reached the shared object.
    data = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x07\x00\x00\x00float16sb."
    path = torch_zip(tmp_path / "retype.ckpt", data)
    with pytest.raises(UnsafeCheckpointError, match="retype.ckpt: refusing .* modify StorageType"):
        load_state_dict(path)
    from paddiff.safe_pickle import ALLOWED_GLOBALS

    assert ALLOWED_GLOBALS["torch", "FloatStorage"].dtype == "float32"
