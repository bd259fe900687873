"""paddiff: Stable-Diffusion-class text-to-image generation on PaddlePaddle.

Importing `paddiff` is cheap: it does not import Paddle, PaddleNLP or PaddleHub. Those are imported
by the components that need them, the first time they are used.
"""

__version__ = "0.1.0"

import importlib.util as _importlib_util  # noqa: E402
import sys as _sys  # noqa: E402

# Paddle is not an install requirement (the build is the user's choice: see setup.cfg), so say
# once, plainly, what to install when there is none. find_spec looks without importing Paddle.
if _importlib_util.find_spec("paddle") is None:
    raise ImportError(
        f"paddiff needs PaddlePaddle, and no Paddle build is installed in this Python "
        f'({_sys.executable}). For CPU: pip install "paddiff[cpu]" (or pip install '
        f"paddlepaddle==3.3.1). For an NVIDIA GPU: install the paddlepaddle-gpu build for your "
        f"CUDA version from PaddlePaddle's installation guide, then pip install paddiff."
    )

from paddiff import hub_import  # noqa: E402

hub_import.install()  # PaddleHub's module folder is also named `paddiff`: see hub_import.py

from paddiff.interfaces import (  # noqa: E402
    VAE,
    Denoiser,
    SafetyFilter,
    Scheduler,
    SchedulerOutput,
    TextEncoder,
    Verdict,
)
from paddiff.registry import (  # noqa: E402
    BrokenPluginError,
    PluginConformanceError,
    PluginError,
    UnknownPluginError,
    get,
    list_plugins,
    register,
)

#: The generation API: name -> module, imported on first use (see __getattr__ below).
_LAZY = {
    "load_pipeline": "paddiff.loader",
    "Pipeline": "paddiff.pipeline",
    "GenerationResult": "paddiff.results",
    "StepInfo": "paddiff.results",
    "SafetyBlocked": "paddiff.safety",
    "GenerationCancelled": "paddiff.results",
    "ValidationError": "paddiff.validation",
    "PromptTruncatedWarning": "paddiff.prompts",
    "PromptCache": "paddiff.prompt_cache",
    "save_image": "paddiff.png_info",
    "read_parameters": "paddiff.png_info",
}

__all__ = [
    "__version__",
    "TextEncoder",
    "Denoiser",
    "VAE",
    "Scheduler",
    "SchedulerOutput",
    "SafetyFilter",
    "Verdict",
    "get",
    "register",
    "list_plugins",
    "PluginError",
    "UnknownPluginError",
    "BrokenPluginError",
    "PluginConformanceError",
    *_LAZY,
]


def __getattr__(name: str):
    """The generation API, imported on first use (it brings in NumPy and, via the components,
    Paddle), so that `import paddiff` stays cheap."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'paddiff' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
