"""A model location -> component instances (`load_components`, and `load_pipeline` on top of it),
and the inverse, `save_components`.

Locations:
- a folder with `model_index.json`: diffusers, ppdiffusers (`model_state.pdparams`, Paddle
  layout) or paddiff's own `save_components` output. The index names each component's class
  (`["diffusers", "UNet2DConditionModel"]`); the class is looked up in the registry by that name.
- a single-file checkpoint (`.safetensors`, `.ckpt`, ...) in the original CompVis / A1111 layout,
  converted in memory by `paddiff.convert.original_sd`.
- nothing (`load_pipeline()`): the embedded default model, the folder that the `paddiff.models`
  entry point `embedded` returns (paddiff's own package registers it).

Component classes are built with `from_state_dict(config, state, source=..., **options)` when
they have it (weights then come from `paddiff.weights`, in any format or variant), otherwise
with `from_pretrained(folder, **options)`. How their networks run is `paddiff.execution`'s
business: the loader only hands the execution options to `set_execution`.
"""

from __future__ import annotations

import json
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from paddiff.registry import Registry, default_registry
from paddiff.weights import (
    WEIGHT_SUFFIXES,
    load_component_weights,
    load_state_dict,
    save_state_dict,
)

#: returned key -> (diffusers sub-folder, registry kind)
COMPONENTS = {
    "denoiser": ("unet", "denoisers"),
    "vae": ("vae", "vaes"),
    "text_encoder": ("text_encoder", "text_encoders"),
}
SCHEDULER = ("scheduler", "schedulers")
CHECKPOINT_SUFFIXES = WEIGHT_SUFFIXES  # a single file is a checkpoint if load_state_dict reads it
# the class a single-file checkpoint's part is loaded with, unless overridden
SINGLE_FILE_CLASSES = {
    "denoiser": "UNet2DConditionModel",
    "vae": "AutoencoderKL",
    "text_encoder": "CLIPTextModel",
}
# model_index.json's library names, unless a component says otherwise (`model_index_library`)
LIBRARIES = {"text_encoder": "transformers"}  # the rest are "diffusers"


def load_components(
    location: str | Path,
    variant: str | None = None,
    *,
    config: dict | str | Path | None = None,
    tokenizer: str | Path | None = None,
    registry: Registry | None = None,
    execution: str | None = None,
    cache_dir: str | Path | None = None,
    precision: str | None = None,
    runtime: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """{"denoiser", "vae", "text_encoder", "scheduler"} instances for a model folder or file.

    variant:   weights variant to load from a folder ("fp16": `*.fp16.safetensors`).
    overrides: `denoiser=`, `vae=`, `text_encoder=`, `scheduler=`: an instance, used as is, or a
               registry name, whose class replaces the one the model names (a scheduler swap:
               `scheduler="EulerDiscreteScheduler"` or an alias such as "dpm++2m-karras" keeps
               the model's scheduler config).
    config:    single files only: config entries replacing the inferred ones, per component
               ({"denoiser": {"attention_head_dim": 8}}), or a diffusers folder whose
               component configs to use instead.
    tokenizer: the tokenizer folder (folders default to their `tokenizer/`; single files carry
               none and default to the `config` folder's `tokenizer/`, else to SD's CLIP
               tokenizer built from the vocabulary paddiff ships).
    execution: "auto" (default; or $PADDIFF_EXECUTION), "static" or "dynamic": how the networks
               that components declare (`networks()`) run. Static runs programs exported on first
               use into `cache_dir` (default $PADDIFF_CACHE_DIR or ~/.cache/paddiff/exported)
               with Paddle Inference; "auto" is static with a fall-back to the dynamic graph for
               a network that cannot be exported. Dynamic is for training and debugging.
    precision: "fp32" (default; or $PADDIFF_PRECISION) or "bf16": the arithmetic of exported
               programs ("bf16" needs AVX512-BF16 or AMX; see docs/performance.md).
    runtime:   the back end that runs exported programs: "auto" (default; or $PADDIFF_RUNTIME),
               "paddle-inference", "openvino" or another `paddiff.runtimes` plugin
               (paddiff.execution.runtimes).
    """
    from paddiff.execution.modes import resolve_execution
    from paddiff.execution.predictor import resolve_precision
    from paddiff.execution.runtimes import check_runtime_name

    execution = resolve_execution(execution)  # wrong values fail before anything loads
    # (the dynamic graph ignores the precision, so only a static run needs the instructions)
    precision = resolve_precision(precision, check_hardware=execution != "dynamic")
    check_runtime_name(runtime)
    location = Path(location)
    registry = registry or default_registry()
    unknown = set(overrides) - set(COMPONENTS) - {"scheduler"}
    if unknown:
        raise TypeError(f"unknown component overrides: {', '.join(sorted(unknown))}")
    if location.is_dir():
        if config is not None:
            raise ValueError(
                "config= (--config) applies to single-file checkpoints; edit the folder's configs"
            )
        with _deferring(execution) as deferred_layers:
            components = _from_folder(location, variant, tokenizer, registry, overrides)
        return _set_execution(components, execution, cache_dir, precision, runtime, deferred_layers)
    if location.is_file() and location.suffix in CHECKPOINT_SUFFIXES:
        if variant is not None:
            raise ValueError(
                f"{location}: variant= (--variant) applies to model folders, not single files"
            )
        with _deferring(execution) as deferred_layers:
            components = _from_single_file(location, config, tokenizer, registry, overrides)
        return _set_execution(components, execution, cache_dir, precision, runtime, deferred_layers)
    if location.exists():
        raise ValueError(
            f"{location} is neither a model folder (with model_index.json) nor a checkpoint file "
            f"({', '.join(CHECKPOINT_SUFFIXES)})"
        )
    raise FileNotFoundError(f"model not found: {location}")


def _deferring(execution: str):
    """Components are built with their weights checked but not read (paddiff.execution.deferred):
    a network whose program is cached then never reads them; the others read them in
    set_execution, right after. The dynamic graph reads them as it always did."""
    from paddiff.execution.deferred import deferring_weights

    return deferring_weights(execution != "dynamic")


def _set_execution(components, execution, cache_dir, precision, runtime, deferred_layers=()):
    from paddiff.execution import set_execution  # imports Paddle: only once a model is loaded

    try:
        return set_execution(components, execution, cache_dir, precision, runtime=runtime)
    finally:
        if deferred_layers:
            from paddiff.execution.deferred import settle
            from paddiff.execution.modes import networks_of

            networks = [n for c in components.values() for n in networks_of(c)]
            settle(deferred_layers, networks)


# -- folders ---------------------------------------------------------------------------------------


def _from_folder(folder, variant, tokenizer, registry, overrides) -> dict[str, Any]:
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        hint = "for a single component, use the component class's from_pretrained"
        if (folder.parent / "model_index.json").is_file():  # e.g. --model sd15/unet
            hint = f"{folder.name}/ is one component of the model in {folder.parent}: give that"
        raise FileNotFoundError(
            f"{folder} has no model_index.json: not a diffusers / ppdiffusers / paddiff model "
            f"folder ({hint})"
        )
    index = _read_json(index_path)
    from paddiff.sdxl.loading import components_from_folder, is_sdxl_index

    if is_sdxl_index(index):  # two text encoders, added UNet inputs: paddiff.sdxl
        return components_from_folder(folder, index, variant, tokenizer, registry, overrides)
    scheduler_config = _read_json(folder / SCHEDULER[0] / "scheduler_config.json")
    components = {}
    for name, (sub, kind) in COMPONENTS.items():
        override = overrides.get(name)
        if override is not None and not isinstance(override, str):
            components[name] = override
            continue
        entry = index.get(sub)
        if not override and not (isinstance(entry, list) and len(entry) == 2 and entry[1]):
            raise ValueError(f"{index_path} names no class for {sub!r} (got {entry!r})")
        cls = registry.get(kind, override or entry[1])
        if not (folder / sub).is_dir():
            raise FileNotFoundError(
                f"component folder missing: {folder / sub} (named in {index_path})"
            )
        options = _options(name, folder, tokenizer, scheduler_config)
        components[name] = _build_from_folder(cls, folder / sub, variant, options)
    components["scheduler"] = _scheduler(overrides.get("scheduler"), scheduler_config, registry)
    return components


def _build_from_folder(cls, folder: Path, variant, options):
    if hasattr(cls, "from_state_dict"):
        from paddiff.convert.legacy_names import modernize_keys

        config = _read_json(folder / "config.json")
        state = modernize_keys(load_component_weights(folder, variant))
        source = ", ".join(str(f) for f in state.files)
        return cls.from_state_dict(config, state, source=source, **options)
    if variant is not None:
        raise ValueError(
            f"{cls.__name__} has no from_state_dict, so paddiff cannot give it variant "
            f"{variant!r} weights from {folder}"
        )
    return cls.from_pretrained(folder, **options)


def _options(name: str, folder: Path | None, tokenizer, scheduler_config: dict) -> dict:
    if name == "denoiser":
        return {"prediction_type": scheduler_config.get("prediction_type", "epsilon")}
    if name == "text_encoder":
        path = Path(tokenizer) if tokenizer else (folder / "tokenizer" if folder else None)
        return {"tokenizer_path": path}
    return {}


def _scheduler(override, config: dict, registry: Registry):
    """The scheduler: an instance as given, else the class named by `override` (any name
    `paddiff.scheduler_names` accepts, e.g. "dpm++2m-karras", with the options it implies) or by
    the config's `_class_name`, built from the model's scheduler config."""
    from paddiff.scheduler_names import resolve_scheduler_name

    if override is not None and not isinstance(override, str):
        return override
    name = override or config.get("_class_name")
    if not name:
        raise ValueError("the scheduler config names no _class_name; pass scheduler=<name>")
    name, options = resolve_scheduler_name(name, registry.names(SCHEDULER[1]))
    # the config records the name the scheduler was created under, which save_components writes
    return registry.get(SCHEDULER[1], name).from_config({**config, **options, "_class_name": name})


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


# -- single files ----------------------------------------------------------------------------------


def _from_single_file(path, config, tokenizer, registry, overrides) -> dict[str, Any]:
    from paddiff.convert.original_sd import convert_checkpoint

    config_folder = Path(config) if isinstance(config, (str, Path)) else None
    if config_folder and not config_folder.is_dir():
        raise FileNotFoundError(f"config folder not found: {config_folder}")
    if tokenizer is None and config_folder and (config_folder / "tokenizer").is_dir():
        tokenizer = config_folder / "tokenizer"  # the model folder whose configs we take
    state = load_state_dict(path, dtype="float32")  # fp16 / bf16 files into float32 models
    from paddiff.convert.original_sdxl import is_sdxl_checkpoint

    if is_sdxl_checkpoint(state):  # two text encoders, added UNet inputs: paddiff.sdxl
        from paddiff.sdxl.loading import components_from_single_file

        return components_from_single_file(
            path, state, config, config_folder, tokenizer, registry, overrides
        )
    parts = convert_checkpoint(state, None if config_folder else config)
    if config_folder:
        _replace_configs(parts, config_folder)
    scheduler_config = parts["scheduler"].config
    components = {}
    for name, (sub, kind) in COMPONENTS.items():
        override = overrides.get(name)
        if override is not None and not isinstance(override, str):
            components[name] = override
            continue
        if name not in parts:
            raise ValueError(f"{path} holds no {sub} weights; pass {name}=<a loaded component>")
        cls = registry.get(kind, override or SINGLE_FILE_CLASSES[name])
        options = _options(name, None, tokenizer, scheduler_config)
        if name == "text_encoder" and tokenizer is None:
            part = parts[name]
            vocab_size = part.config.get("vocab_size")
            options = {"tokenizer": _shipped_tokenizer(cls, path, part.pad_token, vocab_size)}
        components[name] = _build_from_state(
            cls, parts[name].config, parts[name].state, path, options
        )
    components["scheduler"] = _scheduler(overrides.get("scheduler"), scheduler_config, registry)
    return components


def _shipped_tokenizer(cls, path: Path, pad_token: str, vocab_size: int):
    """A single file holds no tokenizer: SD 1.x and 2.x share CLIP's vocabulary and differ only
    in the pad token. The text-encoder class the registry gave may ship that vocabulary
    (`shipped_tokenizer(pad_token=...)`, as paddiff's CLIPTextModel does)."""
    shipped = getattr(cls, "shipped_tokenizer", None)
    if shipped is None:
        raise ValueError(
            f"{path} holds no tokenizer and {cls.__name__} ships none; pass tokenizer=<the "
            "model's tokenizer folder> (--tokenizer on the command line)"
        )
    tokenizer = shipped(pad_token=pad_token)
    if vocab_size != len(tokenizer.vocab):
        raise ValueError(
            f"{path}: its text encoder has a {vocab_size}-token vocabulary, not the "
            f"{len(tokenizer.vocab)} of the tokenizer {cls.__name__} ships, so that tokenizer "
            "does not fit; pass tokenizer=<the model's tokenizer folder> (--tokenizer on the "
            "command line)"
        )
    return tokenizer


def _replace_configs(parts, folder: Path) -> None:
    for name, (sub, _) in [*COMPONENTS.items(), ("scheduler", SCHEDULER)]:
        file = "scheduler_config.json" if name == "scheduler" else "config.json"
        if name in parts and (folder / sub / file).is_file():
            parts[name].config = _read_json(folder / sub / file)


def _build_from_state(cls, config: dict, state, path: Path, options: dict):
    if hasattr(cls, "from_state_dict"):
        return cls.from_state_dict(config, state, source=str(path), **options)
    # A plugin that only reads folders: give it one (written tensor by tensor, then removed).
    with tempfile.TemporaryDirectory(prefix="paddiff-convert-") as tmp:
        folder = Path(tmp) / "component"
        folder.mkdir()
        if options.get("tokenizer") is not None:  # a ready tokenizer becomes a folder too
            options = {**options, "tokenizer_path": Path(tmp) / "tokenizer"}
            options.pop("tokenizer").save_pretrained(options["tokenizer_path"])
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        save_state_dict(state, folder / "diffusion_pytorch_model.safetensors")
        return cls.from_pretrained(folder, **options)


# -- saving ----------------------------------------------------------------------------------------


def save_components(components: dict[str, Any], folder: str | Path) -> None:
    """Write components as a diffusers-layout folder that `load_components` reads back exactly.

    Each model component writes itself (`save_pretrained`); the scheduler's config goes to
    `scheduler/scheduler_config.json`, the text encoder's tokenizer to `tokenizer/` when the
    tokenizer can save itself, and `model_index.json` names every class.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"_class_name": "StableDiffusionPipeline", "_paddiff": True}
    for name, (sub, _) in COMPONENTS.items():
        component = components[name]
        if not hasattr(component, "save_pretrained"):
            raise TypeError(f"{name} ({type(component).__name__}) cannot save itself")
        component.save_pretrained(folder / sub)
        library = getattr(component, "model_index_library", LIBRARIES.get(name, "diffusers"))
        index[sub] = [library, type(component).__name__]
    scheduler = components["scheduler"]
    from paddiff.sampling.sampler import scheduler_class_name

    config = {"_class_name": scheduler_class_name(scheduler), **scheduler.config}
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config, indent=2))
    index["scheduler"] = ["diffusers", config["_class_name"]]
    tokenizer = getattr(components["text_encoder"], "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(folder / "tokenizer")
        # the tokenizer says which transformers class reads its files (BertTokenizer, ...)
        name = getattr(tokenizer, "transformers_class", type(tokenizer).__name__)
        index["tokenizer"] = ["transformers", name]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


# -- pipelines -------------------------------------------------------------------------------------

#: The name results and PNG parameters give the embedded default model (its folder is "model").
EMBEDDED_MODEL_NAME = "paddiff-embedded"
#: Entry-point group of model folders that packages ship; `embedded` is the default model.
MODELS_GROUP = "paddiff.models"


def embedded_model_path() -> Path | None:
    """The embedded default model's folder, if it is installed.

    Found through the `paddiff.models` entry point `embedded` (paddiff's own first, so installing
    another package never changes the default), so core imports no plugin by name; loading the
    entry imports only a tiny `__init__`, keeping `paddiff generate` start-up cheap.
    """
    entries = [e for e in metadata.entry_points(group=MODELS_GROUP) if e.name == "embedded"]
    entries.sort(key=lambda e: (getattr(e.dist, "name", "") or "") != "paddiff")
    for entry in entries:
        folder = entry.load()()
        if folder is not None and (Path(folder) / "model_index.json").is_file():
            return Path(folder)
    return None


def load_pipeline(
    location=None, *, scheduler=None, safety_filters=None, controlnet=None, **component_overrides
):
    """A `Pipeline` for a model: a diffusers folder, a single-file checkpoint or a ppdiffusers
    folder; with no location, the embedded default model.

    `scheduler` (a name such as "dpm++2m-karras", or an instance) replaces the model's own;
    other keyword arguments (`text_encoder=`, `denoiser=`, `vae=`, `variant=`, `execution=`,
    `cache_dir=`, `precision=`, `runtime=`, ...) are passed to `load_components`, which uses given
    components instead of loading them. The execution mode applies to the image safety checker
    too. `controlnet` (a path or a list of paths) loads control nets (`Pipeline.load_controlnet`).
    """
    from paddiff.pipeline import Pipeline

    name = None
    if location is None:
        location, name = embedded_model_path(), EMBEDDED_MODEL_NAME
        if location is None:
            raise FileNotFoundError(
                "no model given and the embedded default model is not installed (no "
                f"'{MODELS_GROUP}' entry point 'embedded' with a model_index.json); pass a model "
                "folder or checkpoint file: load_pipeline('path/to/model'), or --model PATH "
                "on the command line"
            )
    components = load_components(location, **component_overrides)
    from paddiff.sdxl import pipeline_class

    pipeline = pipeline_class(components, Pipeline)(
        text_encoder=components["text_encoder"],
        denoiser=components["denoiser"],
        vae=components["vae"],
        scheduler=components["scheduler"],
        safety_filters=safety_filters,
        model_name=name or Path(location).stem,
        model_path=location,
    )
    # the filters were built outside load_components; their networks follow the same options
    _set_execution(
        pipeline.safety.image_filters,
        component_overrides.get("execution"),
        component_overrides.get("cache_dir"),
        component_overrides.get("precision"),
        component_overrides.get("runtime"),
    )
    if scheduler is not None:
        pipeline = pipeline.with_components(scheduler=scheduler)
    if controlnet is not None:
        pipeline.load_controlnet(controlnet, execution=component_overrides.get("execution"))
    return pipeline
