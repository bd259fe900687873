"""Runtime back ends that ship with paddiff beyond Paddle Inference (`paddiff.runtimes` group)."""
