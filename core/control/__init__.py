"""ControlNet: steering generation with control images (docs/controlnet.md).

- `load_controlnet(path, like=unet_config)`: a control net from a diffusers folder or an
  original single file (`control_model.*` keys; .safetensors, .pth / .ckpt through the
  restricted unpickler), fp16 included.
- `preprocess(name, image, **options)`: a control image from a picture with a registered
  `paddiff.preprocessors` plugin (canny, scribble, threshold, invert, none).
- `ControlGuidance`: what a generation call adds to each denoiser call (used by the pipeline).
"""

from paddiff.control.guidance import ControlGuidance, ControlUnit, guess_mode_scales
from paddiff.control.images import prepare_control_image
from paddiff.control.loading import (
    ArchitectureMismatchError,
    architecture_of,
    check_fits,
    load_controlnet,
)
from paddiff.control.preprocess import preprocess, preprocessor_names

__all__ = [
    "ArchitectureMismatchError",
    "ControlGuidance",
    "ControlUnit",
    "architecture_of",
    "check_fits",
    "guess_mode_scales",
    "load_controlnet",
    "prepare_control_image",
    "preprocess",
    "preprocessor_names",
]
