"""Native log lines are dropped from the descriptor they are printed to; everything else printed
meanwhile still reaches the user, in order."""

from __future__ import annotations

import os

from paddiff.execution.quiet import native_output_filtered, paddle2onnx_line


def test_paddle2onnx_progress_lines_are_dropped_from_stdout_and_the_rest_kept(capfd):
    with native_output_filtered(1, paddle2onnx_line):
        os.write(1, b"[Paddle2ONNX] Start parsing the Paddle model file...\n")
        os.write(1, b"kept: the user's own line\n")
        os.write(1, b"2026-12-08 02:44:12 [INFO]\tONNX model saved in /tmp/x/unet.onnx.\n")
        with native_output_filtered(1, paddle2onnx_line):  # nested: one redirection
            print("kept too")  # Python's stdout as well as the descriptor
    out = capfd.readouterr().out
    assert out == "kept: the user's own line\nkept too\n"


def test_paddle_logs_env_lets_everything_through(capfd, monkeypatch):
    monkeypatch.setenv("PADDIFF_PADDLE_LOGS", "1")
    with native_output_filtered(1, paddle2onnx_line):
        os.write(1, b"[Paddle2ONNX] Use opset_version = 17 for ONNX export.\n")
    assert "[Paddle2ONNX]" in capfd.readouterr().out
