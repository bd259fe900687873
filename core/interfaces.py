"""The component interfaces that paddiff's pipeline talks to.

A plugin implements one of these classes and is registered under the matching entry-point group
(see `paddiff.registry`). Subclassing is the easy way; a class that provides the same methods
without subclassing is accepted too (the registry checks the methods when it loads the plugin).

Arrays cross these interfaces as NumPy arrays (float32 unless stated). That keeps the interfaces
framework-neutral: a component may run Paddle's dynamic graph, an exported Paddle Inference
program (which takes and returns NumPy arrays anyway), or plain NumPy, and the pipeline cannot
tell the difference. Image arrays are NCHW with values in [-1, 1].
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # NumPy and Pillow are not imported at run time here, to keep `paddiff` cheap.
    from pathlib import Path

    import numpy as np
    from paddiff.randomness import Generator
    from PIL.Image import Image


class Component(ABC):  # noqa: B024 (a marker base; the interfaces below are abstract)
    """Common base: each interface lists the members a plugin must define.

    Optional for model components (TextEncoder, Denoiser, VAE): a classmethod
    `from_state_dict(config, state, source="...", **options)` building the component from a config
    dict and a `paddiff.weights.StateDict` (diffusers / transformers keys; `state.layout` says
    whether Linear weights are stored torch- or Paddle-style). `paddiff.loader` uses it when
    present, so the plugin gets every weight format, fp16 variants and converted single-file
    checkpoints for free; otherwise it calls `from_pretrained(folder, **options)`. Options the
    loader passes: `prediction_type` (denoisers), `tokenizer_path` (text encoders).

    Optional for any component that runs Paddle networks: a method `networks()` returning the
    `paddiff.execution.Network`s it calls. That is all a component says about execution;
    `paddiff.execution.set_execution` then runs them in the dynamic graph or as exported
    programs, as the user's `execution=` / `precision=` options ask.
    """

    #: Methods the registry checks for when it loads a plugin of this kind.
    required_methods: ClassVar[tuple[str, ...]] = ()


class TextEncoder(Component):
    """Turns prompts into conditioning for the denoiser; owns its tokenizer.

    Attributes a plugin sets:
        max_length:  tokens per prompt window, including special tokens (77 for CLIP).
        hidden_size: width of the conditioning vectors (768 for SD 1.x).
    """

    required_methods = ("from_pretrained", "tokenize", "encode")
    max_length: int
    hidden_size: int

    @classmethod
    @abstractmethod
    def from_pretrained(cls, path: str | Path, **options: Any) -> TextEncoder:
        """Load from a model folder's `text_encoder/` (weights + config.json); the tokenizer is
        read from the sibling `tokenizer/` folder when the encoder needs one."""

    @abstractmethod
    def tokenize(self, prompts: list[str]) -> np.ndarray:
        """Token ids, int64, shape (len(prompts), max_length), padded and truncated exactly as the
        reference tokenizer does."""

    @abstractmethod
    def encode(self, prompts: list[str]) -> np.ndarray:
        """Conditioning, float32, shape (len(prompts), sequence_length, hidden_size).

        Any language the model was trained on is fine. The unconditional (negative) embedding used
        for classifier-free guidance is `encode([""])` unless the encoder overrides
        `unconditional`.
        """

    def unconditional(self, batch_size: int) -> np.ndarray:
        """The embedding that classifier-free guidance contrasts against (the empty prompt)."""
        return self.encode([""] * batch_size)


class Denoiser(Component):
    """The noise-prediction network (a UNet for Stable Diffusion).

    Attributes a plugin sets:
        in_channels:     latent channels it reads (4; 9 for the inpainting UNet, whose extra
                         channels are the masked-image latents and the mask).
        out_channels:    channels it predicts (4).
        prediction_type: what the output means: "epsilon" (the noise), "v_prediction"
                         (v = alpha * noise - sigma * sample) or "sample" (the clean latents).
    """

    required_methods = ("from_pretrained", "__call__")
    in_channels: int
    out_channels: int
    prediction_type: str

    @classmethod
    @abstractmethod
    def from_pretrained(cls, path: str | Path, **options: Any) -> Denoiser:
        """Load from a model folder's `unet/` (weights + config.json)."""

    @abstractmethod
    def __call__(
        self, latents: np.ndarray, timestep: float | np.ndarray, conditioning: np.ndarray
    ) -> np.ndarray:
        """Model output, same shape as latents[:, :out_channels].

        latents: (batch, in_channels, h, w); timestep: a scalar or one value per batch entry;
        conditioning: (batch, sequence_length, hidden_size) from a TextEncoder.
        """


class VAE(Component):
    """The image autoencoder that maps between pixels and latents.

    Attributes a plugin sets:
        scaling_factor:    latents are multiplied by this before denoising (0.18215 for SD 1.x);
                           the pipeline applies it, `encode`/`decode` do not.
        downsample_factor: image pixels per latent pixel along each side (8 for SD).
        latent_channels:   channels of the latent image (4 for SD).
    """

    required_methods = ("from_pretrained", "encode", "decode")
    scaling_factor: float
    downsample_factor: int
    latent_channels: int

    @classmethod
    @abstractmethod
    def from_pretrained(cls, path: str | Path, **options: Any) -> VAE:
        """Load from a model folder's `vae/` (weights + config.json)."""

    @abstractmethod
    def encode(self, images: np.ndarray, generator: Generator | None = None) -> np.ndarray:
        """Unscaled latents for images (N, 3, H, W) in [-1, 1]: a sample of the posterior drawn
        with `generator`, or its mode when no generator is given."""

    @abstractmethod
    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Images (N, 3, H, W) in about [-1, 1] for unscaled latents."""


@dataclass
class SchedulerOutput:
    """What `Scheduler.step` returns (the names follow diffusers)."""

    prev_sample: np.ndarray
    pred_original_sample: np.ndarray | None = None


class Scheduler(Component):
    """A diffusion sampler written to the diffusers scheduler protocol.

    This is one of two forms a `paddiff.schedulers` plugin can take. The other, simpler one is
    a `paddiff.sampling.Sampler`: a sampler function over an x0-denoiser plus a pure schedule
    (what paddiff's built-ins are; see docs/plugins.md). Classes written to this protocol run
    through an adapter (`paddiff.sampling.plan`) and keep working unchanged.

    A scheduler is created from a plain config dict (the contents of a model folder's
    `scheduler_config.json`, whatever class it names), so any registered scheduler can drive any
    model. After `set_timesteps(n)`, the pipeline does, for each `t` in `timesteps`:

        x_in = scheduler.scale_model_input(x, t)
        out  = denoiser(x_in, t, conditioning)
        x    = scheduler.step(out, t, x, generator=g).prev_sample

    Attributes a plugin sets:
        config:           the dict it was created from, with its defaults filled in.
        timesteps:        1-D float or int array of the timesteps to visit, set by `set_timesteps`.
        init_noise_sigma: standard deviation of the initial noise.
        order:            model evaluations per step (1 for most, 2 for Heun-like solvers).
    """

    required_methods = ("from_config", "set_timesteps", "scale_model_input", "step", "add_noise")
    config: dict
    timesteps: np.ndarray
    init_noise_sigma: float
    order: int

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict) -> Scheduler:
        """Create from a config dict; unknown keys are ignored (they belong to other schedulers)."""

    @abstractmethod
    def set_timesteps(self, num_inference_steps: int) -> None:
        """Choose the timesteps for a run of `num_inference_steps` steps."""

    @abstractmethod
    def scale_model_input(self, sample: np.ndarray, timestep: float) -> np.ndarray:
        """The denoiser's input for `sample` at `timestep` (identity for DDPM-style schedulers)."""

    @abstractmethod
    def step(
        self,
        model_output: np.ndarray,
        timestep: float,
        sample: np.ndarray,
        generator: Generator | None = None,
    ) -> SchedulerOutput:
        """Advance `sample` one step. Stochastic schedulers draw their noise from `generator`,
        so that a seeded generator reproduces a run exactly."""

    @abstractmethod
    def add_noise(
        self, original: np.ndarray, noise: np.ndarray, timesteps: np.ndarray
    ) -> np.ndarray:
        """Forward diffusion: `original` noised to `timesteps` (used by image-to-image)."""


@dataclass(frozen=True)
class Verdict:
    """A safety filter's decision about one prompt or one image."""

    allowed: bool
    reason: str = ""  # human-readable; names the category, never a way around the filter
    category: str | None = None  # e.g. "violence", "nsfw"
    matched: str | None = None  # the listed term that matched, for prompt filters
    filter: str = ""  # name of the filter that decided
    details: dict = field(default_factory=dict)  # scores and the like, for logs


class SafetyFilter(Component):
    """Checks prompts before any compute and images after decoding.

    A filter that only checks one of the two returns `Verdict(allowed=True)` for the other.
    """

    required_methods = ("from_config", "check_prompt", "check_images")

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict) -> SafetyFilter:
        """Create from the operator's settings (term-list paths, weights folder, thresholds)."""

    @abstractmethod
    def check_prompt(self, text: str) -> Verdict:
        """Decide about one prompt (or negative prompt) before any compute."""

    @abstractmethod
    def check_images(self, images: list[Image]) -> list[Verdict]:
        """Decide about each generated image, in order."""


class LoraFormat(Component):
    """Reads one family of LoRA files (kohya / A1111, diffusers / PEFT, ...) into the neutral
    form `paddiff.lora` applies: a list of `paddiff.lora.LoraModule`s, each naming a component
    ("unet", "text_encoder", "text_encoder_2"), one of its layers (diffusers' module path,
    dotted or with "." written as "_", as kohya does) and the low-rank factors in torch layout.

    `paddiff.lora` asks every registered format whether it `matches` a file's keys and reads the
    file with the first that does (formats in name order); the layer names are checked against
    the model afterwards, so a reader does not need to know the model.
    """

    required_methods = ("matches", "read")

    @classmethod
    @abstractmethod
    def matches(cls, keys: list[str]) -> bool:
        """Whether this reader understands a file with these tensor keys."""

    @classmethod
    @abstractmethod
    def read(cls, tensors: Any, metadata: dict) -> list:
        """The file's `LoraModule`s. `tensors` maps keys to NumPy arrays (read on access),
        already in torch layout; `metadata` is the safetensors header's metadata ({} for
        pickles). Raise ValueError for a file of this family that cannot be read."""


class ControlNet(Component):
    """A control network (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image
    Diffusion Models"): reads the denoiser's input plus a control image and returns residuals
    that the denoiser adds to its skip connections and to its middle block's output.

    Attributes a plugin sets:
        base_architecture: which denoisers it fits, as `paddiff.control.architecture_of` names
                           them for a UNet config (e.g. "sd1 (cross_attention_dim 768, ...)");
                           the pipeline refuses a control net whose value differs from its
                           denoiser's, naming both.

    The denoiser must accept `down_block_additional_residuals` and
    `mid_block_additional_residual` keyword arguments (paddiff's UNet does).
    """

    required_methods = ("from_pretrained", "__call__")
    base_architecture: str

    @classmethod
    @abstractmethod
    def from_pretrained(cls, path: str | Path, **options: Any) -> ControlNet:
        """Load from a diffusers control-net folder (weights + config.json)."""

    @abstractmethod
    def __call__(
        self,
        latents: np.ndarray,
        timestep: float | np.ndarray,
        conditioning: np.ndarray,
        control_image: np.ndarray,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """(down residuals, mid residual), unscaled: the pipeline applies
        `controlnet_conditioning_scale` and guess mode's per-level scales.

        control_image: (batch, channels, H, W) in [0, 1], H and W the image size in pixels.
        """


class Preprocessor(Component):
    """Turns a user's picture into a control image (an edge map, a scribble, ...).

    `from_config(options)` receives the user's options (e.g. {"low_threshold": 100}); unknown
    options are an error naming the known ones.
    """

    required_methods = ("from_config", "__call__")

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict) -> Preprocessor:
        """Create with these options (an empty dict: the defaults)."""

    @abstractmethod
    def __call__(self, image: Image) -> Image:
        """The control image for `image`, an RGB picture of the same size."""


class Runtime(Component):
    """An execution back end: what runs the programs paddiff exports (`paddiff.execution`).

    A class with a `name` and `load(prefix, threads=None, precision=None)` returning a callable
    that takes NumPy arrays in the program's input order and returns a list of NumPy arrays.
    `prefix` is a program `paddle.jit.save` wrote; precision is "fp32" or "bf16".

    Optional class members: `program_variant` ("portable": the program is exported with plain
    ops that converters understand, see `paddiff.execution.portable`; None: the ordinary
    export), and a static method `unavailable()` returning None, or why the back end cannot run
    here (its package is missing, no such device), in which case paddiff falls back to
    Paddle Inference with a warning (`paddiff.execution.runtimes`).
    """

    required_methods = ("load",)
    name: str


#: Entry-point group suffix -> interface. The group for kind K is `paddiff.K`.
KINDS: dict[str, type[Component]] = {
    "text_encoders": TextEncoder,
    "denoisers": Denoiser,
    "vaes": VAE,
    "schedulers": Scheduler,
    "safety_filters": SafetyFilter,
    "lora_formats": LoraFormat,
    "controlnets": ControlNet,
    "preprocessors": Preprocessor,
    "runtimes": Runtime,
}
