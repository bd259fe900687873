"""`paddiff batch`: many generation jobs from a JSON-lines file, resumable and exactly once.

A job file holds one JSON object per line (fields in `JOB_FIELDS`); a job asks for `count`
images with seeds seed..seed+count-1 (as `generate -n` numbers them) or the listed `seeds`.
Each image is one *unit* with a digest of everything that decides its pixels (`unit_digest`:
mode, prompts, seed, size, steps, scheduler, guidance, strength, the input images' bytes, the
model and its weights' hash, and the job id). The digest is part of the image's file name,
`images/<id>/<seed>-<digest>.png`, so:

- an image is written under a temporary name and renamed, so a file under its real name is
  complete, and a name stands for one set of settings only;
- `metadata.jsonl` (one line per image, appended as images finish) is the manifest: a unit is
  done when a line names its file and the file's SHA-256 matches that line. A rerun skips done
  units and makes the rest; a crash or kill loses at most the images in flight;
- a job whose settings changed gets new digests, so its images are made again; the old files
  are moved to `stale/` and their lines dropped, never mixed with the new ones.

Work is cut into tasks of up to `chunk` images of one job; tasks are sorted by model, so one
loaded pipeline serves every job of a model, and its prompt cache serves repeated prompts.
Tasks run in this process, in `--workers N` local processes (`run_local`), or on a Ray cluster
(`paddiff.batch_ray`); whoever runs them, only the process that called `run_batch` writes
`metadata.jsonl` and `errors.jsonl`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("txt2img", "img2img", "inpaint")
#: job field -> what it holds (the schema users write; docs/batch.md)
JOB_FIELDS = {
    "id": "a name for the job, carried into metadata.jsonl (default: line<N>)",
    "mode": "txt2img (default), img2img or inpaint",
    "prompt": "what to draw",
    "negative_prompt": "what to avoid",
    "seed": "the first seed: image i gets seed + i (default 0)",
    "seeds": "one seed per image (instead of seed and count)",
    "count": "how many images (default 1, or len(seeds))",
    "width": "image width (default: the model's size, or the input image's)",
    "height": "image height",
    "steps": "denoising steps (default 20)",
    "scheduler": "sampler name (default: the model's own)",
    "guidance": "classifier-free guidance scale (default 7.5)",
    "image": "input image path (img2img, inpaint), relative to the job file",
    "mask": "mask path (inpaint; white is repainted), relative to the job file",
    "strength": "how much to change the image, 0 to 1 (img2img 0.8, inpaint 1.0)",
    "model": "model folder or checkpoint (default: the embedded model)",
    "labels": "anything JSON, carried into metadata.jsonl as it is",
    "loras": 'LoRA / LoCon files: [{"name": N or "path": P, "scale": S}]; names are looked up '
    "in --lora-dir ($PADDIFF_LORA_DIR), paths are relative to the job file",
    "embeddings": "textual-inversion files: paths relative to the job file, or "
    '{"name": N} looked up in $PADDIFF_EMBEDDING_DIR',
    "controlnets": 'control nets: [{"name": N or "path": P, "image": IMG, "preprocessor", '
    '"scale", "start", "end"}]; names are looked up in --controlnet-dir '
    "($PADDIFF_CONTROLNET_DIR), paths and images are relative to the job file",
    "guess_mode": "with controlnets: diffusers' guess mode (default false)",
}
MAX_IMAGES_PER_JOB = 100_000
_SAFE_ID = re.compile(r"[^\w.-]+")


class JobError(ValueError):
    """A job line that cannot be run; the message says which field and why."""


@dataclass(frozen=True)
class Job:
    """One validated line of the job file."""

    line: int
    id: str
    mode: str
    prompt: str
    seeds: tuple[int, ...]
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int = 20
    scheduler: str | None = None
    guidance: float = 7.5
    strength: float | None = None
    image: str | None = None  # absolute paths
    mask: str | None = None
    model: str | None = None
    labels: Any = None
    input_hashes: tuple[str | None, str | None] = (None, None)  # SHA-256 of image and mask
    loras: tuple[tuple[str, float, str], ...] = ()  # (absolute path, scale, SHA-256)
    embeddings: tuple[tuple[str, str], ...] = ()  # (absolute path, SHA-256)
    controlnets: tuple = ()  # paddiff.control.jobs.JobControl
    guess_mode: bool = False

    def settings(self) -> dict:
        """What decides the pixels (the model aside), as plain JSON. Adapters and control nets
        appear only when a job has them, so the digests of jobs without them are what they
        always were."""
        adapters = {}
        if self.loras:
            adapters["loras"] = [
                {"name": Path(path).stem, "scale": scale, "sha256": digest}
                for path, scale, digest in self.loras
            ]
        if self.embeddings:
            adapters["embeddings"] = [
                {"name": Path(path).stem, "sha256": digest} for path, digest in self.embeddings
            ]
        if self.controlnets:
            adapters["controlnets"] = [unit.settings() for unit in self.controlnets]
            adapters["guess_mode"] = self.guess_mode
        return {
            "mode": self.mode,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "scheduler": self.scheduler,
            "guidance": self.guidance,
            "strength": self.strength,
            "image_sha256": self.input_hashes[0],
            "mask_sha256": self.input_hashes[1],
            **adapters,
        }


# -- reading the job file ----------------------------------------------------------------------


def read_jobs(path: str | Path, lora_dir=None, controlnet_dir=None) -> tuple[list[Job], list[dict]]:
    """(jobs, error lines) of a job file. Bad lines (not JSON, unknown field, invalid setting,
    a repeated id) become {"line", "id", "error"} and do not stop the others. Blank lines and
    lines starting with # are skipped. LoRA names are looked up in `lora_dir` (a folder or a
    list), else in $PADDIFF_LORA_DIR; control-net names in `controlnet_dir`, else in
    $PADDIFF_CONTROLNET_DIR."""
    from paddiff.control.jobs import CONTROLNET_DIR_ENV
    from paddiff.lora.names import folders

    lora_dirs = folders(lora_dir)
    controlnet_dirs = folders(controlnet_dir, CONTROLNET_DIR_ENV)
    path = Path(path)
    base = path.resolve().parent
    jobs, errors, seen_ids = [], [], {}
    with open(path, encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            fields = None
            try:
                try:
                    fields = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise JobError(f"not JSON: {exc.msg} (column {exc.colno})") from None
                job = parse_job(fields, number, base, lora_dirs, controlnet_dirs)
                if job.id in seen_ids:
                    raise JobError(f"id {job.id!r} is already used on line {seen_ids[job.id]}")
                seen_ids[job.id] = number
                jobs.append(job)
            except JobError as exc:
                known_id = fields.get("id") if isinstance(fields, dict) else None
                errors.append({"line": number, "id": known_id, "error": str(exc)})
    return jobs, errors


def parse_job(
    fields, line: int, base: Path = Path("."), lora_dirs=None, controlnet_dirs=None
) -> Job:
    """A `Job` from one line's JSON object; raises JobError naming the first bad field.
    `lora_dirs`: folders for LoRA names (default $PADDIFF_LORA_DIR); `controlnet_dirs`: for
    control-net names (default $PADDIFF_CONTROLNET_DIR)."""
    from paddiff.control.jobs import CONTROLNET_DIR_ENV, parse_job_controls
    from paddiff.lora.names import folders

    if not isinstance(fields, dict):
        raise JobError(f"a job must be a JSON object, got {type(fields).__name__}")
    unknown = sorted(set(fields) - set(JOB_FIELDS))
    if unknown:
        raise JobError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; fields are {', '.join(JOB_FIELDS)}"
        )
    get = fields.get
    job_id = get("id", f"line{line}")
    if not isinstance(job_id, (str, int)) or isinstance(job_id, bool) or str(job_id) == "":
        raise JobError(f"'id' must be a non-empty string or integer, got {job_id!r}")
    mode = get("mode", "txt2img")
    if mode not in MODES:
        raise JobError(f"'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    prompt = get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise JobError("'prompt' is required and must be a non-empty string")
    negative = get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise JobError(f"'negative_prompt' must be a string, got {negative!r}")
    seeds = _seeds(fields)
    width, height = (_integer(fields, name, 8, None) for name in ("width", "height"))
    for name, value in (("width", width), ("height", height)):
        if value is not None and value % 8:
            raise JobError(f"'{name}' must be a multiple of 8, got {value}")
    steps = _integer(fields, "steps", 1, 10_000)
    guidance = _number(fields, "guidance", 0.0, 100.0)
    strength = _number(fields, "strength", 0.0, 1.0)
    scheduler = get("scheduler")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler):
        raise JobError(f"'scheduler' must be a sampler name, got {scheduler!r}")
    if scheduler is not None:
        _check_scheduler(scheduler)
    model = get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise JobError(f"'model' must be a path, got {model!r}")
    if model is not None and not (base / model).exists():
        raise JobError(f"model {model!r} not found")
    image, mask = _input(fields, "image", base), _input(fields, "mask", base)
    if mode == "txt2img":
        for name, value in (("image", image), ("mask", mask), ("strength", strength)):
            if value is not None:
                raise JobError(f"'{name}' applies only to img2img and inpaint jobs")
    if mode in ("img2img", "inpaint") and image is None:
        raise JobError(f"an {mode} job needs an 'image'")
    if mode == "inpaint" and mask is None:
        raise JobError("an inpaint job needs a 'mask'")
    if mode == "img2img" and mask is not None:
        raise JobError("'mask' applies only to inpaint jobs")
    if strength is None and mode != "txt2img":
        strength = 0.8 if mode == "img2img" else 1.0
    if controlnet_dirs is None:
        controlnet_dirs = folders(None, CONTROLNET_DIR_ENV)
    controlnets, guess_mode = parse_job_controls(fields, base, controlnet_dirs, JobError)
    return Job(
        line=line,
        id=str(job_id),
        mode=mode,
        prompt=prompt,
        seeds=seeds,
        negative_prompt=negative,
        width=width,
        height=height,
        steps=20 if steps is None else steps,
        scheduler=scheduler,
        guidance=7.5 if guidance is None else guidance,
        strength=strength,
        image=image,
        mask=mask,
        model=str((base / model).resolve()) if model is not None else None,
        labels=get("labels"),
        input_hashes=(_file_sha256(image), _file_sha256(mask)),
        loras=_loras(fields, base, lora_dirs),
        embeddings=_embeddings(fields, base),
        controlnets=controlnets,
        guess_mode=guess_mode,
    )


def _loras(fields, base: Path, lora_dirs) -> tuple[tuple[str, float, str], ...]:
    """[(absolute path, scale, SHA-256)] of a job's "loras": [{"name" or "path", "scale"}]."""
    from paddiff.lora.names import LORA_DIR_ENV, folders

    items = _adapter_list(fields, "loras")
    if lora_dirs is None:
        lora_dirs = folders(None, LORA_DIR_ENV)
    loras = []
    for item in items:
        if not isinstance(item, dict) or set(item) - {"name", "path", "scale"}:
            raise JobError(
                '\'loras\' entries are objects {"name": ..., "scale": ...} or '
                f'{{"path": ..., "scale": ...}}, got {item!r}'
            )
        path = _adapter_file(item, base, lora_dirs, "LoRA", "--lora-dir or $PADDIFF_LORA_DIR")
        scale = item.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise JobError(f"'loras': the scale of {path.name} must be a number, got {scale!r}")
        if not math.isfinite(scale) or abs(scale) > 100:
            raise JobError(f"'loras': the scale of {path.name} must be in [-100, 100], got {scale}")
        loras.append((str(path), float(scale), _file_sha256(str(path))))
    if len({path for path, _, _ in loras}) != len(loras):
        raise JobError("'loras' names one file twice")
    return tuple(loras)


def _embeddings(fields, base: Path) -> tuple[tuple[str, str], ...]:
    """[(absolute path, SHA-256)] of a job's "embeddings": paths, or {"name"} / {"path"}."""
    from paddiff.lora.names import EMBEDDING_DIR_ENV, folders

    dirs = folders(None, EMBEDDING_DIR_ENV)
    found = []
    for item in _adapter_list(fields, "embeddings"):
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or set(item) - {"name", "path"}:
            raise JobError(f"'embeddings' entries are paths or {{\"name\": ...}}, got {item!r}")
        path = _adapter_file(item, base, dirs, "embedding", "$PADDIFF_EMBEDDING_DIR")
        found.append((str(path), _file_sha256(str(path))))
    return tuple(dict.fromkeys(found))


def _adapter_list(fields, name) -> list:
    value = fields.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise JobError(f"'{name}' must be a list, got {value!r}")
    return value


def _adapter_file(item: dict, base: Path, dirs, what: str, where: str) -> Path:
    """The file an adapter entry names: "name" in the folders, or "path" from the job file."""
    from paddiff.lora.names import AdapterNameError, resolve_name

    if ("name" in item) == ("path" in item):
        raise JobError(f'a {what} entry needs "name" or "path" (one of them), got {item!r}')
    if "name" in item:
        if not isinstance(item["name"], str):
            raise JobError(f"a {what} name must be a string, got {item['name']!r}")
        try:
            return resolve_name(item["name"], list(dirs), what).resolve()
        except AdapterNameError as exc:
            raise JobError(f"{exc} (folders: {where})") from None
    value = item["path"]
    if not isinstance(value, str) or not value:
        raise JobError(f"a {what} path must be a non-empty string, got {value!r}")
    path = (base / value).resolve()
    if not path.is_file():
        raise JobError(f"{what} file not found: {value}")
    return path


def _seeds(fields) -> tuple[int, ...]:
    count = _integer(fields, "count", 1, MAX_IMAGES_PER_JOB)
    if "seeds" in fields:
        if "seed" in fields:
            raise JobError("give 'seed' or 'seeds', not both")
        seeds = fields["seeds"]
        if not isinstance(seeds, list) or not seeds:
            raise JobError(f"'seeds' must be a non-empty list of integers, got {seeds!r}")
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
                raise JobError(f"'seeds' must hold integers from 0 to 2**63-1, got {seed!r}")
        if len(set(seeds)) != len(seeds):
            raise JobError("'seeds' repeats a seed (the same seed gives the same image)")
        if count is not None and count != len(seeds):
            raise JobError(f"'count' is {count} but 'seeds' lists {len(seeds)}")
        if len(seeds) > MAX_IMAGES_PER_JOB:
            raise JobError(f"a job may ask for at most {MAX_IMAGES_PER_JOB} images")
        return tuple(seeds)
    seed = _integer(fields, "seed", 0, 2**63 - 1)
    first, count = (0 if seed is None else seed), (1 if count is None else count)
    if first + count > 2**63:
        raise JobError(f"seeds {first}..{first + count - 1} go past 2**63-1")
    return tuple(range(first, first + count))


def _integer(fields, name, low, high) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobError(f"'{name}' must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise JobError(f"'{name}' must be {bound}, got {value}")
    return value


def _number(fields, name, low, high) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JobError(f"'{name}' must be a number, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise JobError(f"'{name}' must be between {low} and {high}, got {value}")
    return float(value)


def _check_scheduler(name: str) -> None:
    from paddiff.registry import UnknownPluginError
    from paddiff.scheduler_names import resolve_scheduler_name

    try:
        resolve_scheduler_name(name)
    except UnknownPluginError as exc:
        raise JobError(f"unknown scheduler {name!r}: {exc}") from None


def _input(fields, name, base: Path) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise JobError(f"'{name}' must be a file path, got {value!r}")
    path = (base / value).resolve()
    if not path.is_file():
        raise JobError(f"{name} file not found: {value}")
    return str(path)


def _file_sha256(path: str | None) -> str | None:
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- units and tasks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One image of one job."""

    job: Job
    seed: int
    digest: str

    @property
    def file(self) -> str:
        """Path under the output folder, '/'-separated."""
        return f"images/{safe_id(self.job.id)}/{self.seed}-{self.digest[:16]}.png"


def safe_id(job_id: str) -> str:
    """A job id as a folder name: runs of other characters become '_', plus a short hash of the
    id when anything was replaced, so two ids never share a folder."""
    cleaned = _SAFE_ID.sub("_", job_id).strip("._")[:80]
    if cleaned == job_id:
        return cleaned
    return f"{cleaned or 'job'}-{hashlib.sha256(job_id.encode()).hexdigest()[:8]}"


def unit_digest(job: Job, seed: int, model_key: str) -> str:
    """SHA-256 over everything that decides an image's pixels, and the job id."""
    text = json.dumps(
        {"id": job.id, "seed": seed, "model": model_key, **job.settings()},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_key(model: str | None) -> str:
    """Which model and which weights: its path (or "embedded") and its weights' hash."""
    from paddiff.loader import embedded_model_path
    from paddiff.model_hash import model_hash

    location = model or embedded_model_path()
    if location is None:
        return "embedded (not installed)"
    return f"{model or 'embedded'}@{model_hash(location)}"


def plan_units(jobs: Iterable[Job]) -> list[Unit]:
    keys: dict[str | None, str] = {}
    units = []
    for job in jobs:
        if job.model not in keys:
            keys[job.model] = model_key(job.model)
        units += [Unit(job, seed, unit_digest(job, seed, keys[job.model])) for seed in job.seeds]
    return units


def make_tasks(units: list[Unit], chunk: int) -> list[dict]:
    """Tasks of up to `chunk` images of one job, plain JSON (they travel to other processes),
    sorted by model so that one pipeline is loaded per model, and within a model by control
    nets, so that a worker is done with a net before it loads the next. A task never mixes
    jobs, so each pipeline call has one job's control nets and images."""
    by_job: dict[int, list[Unit]] = {}
    for unit in units:
        by_job.setdefault(unit.job.line, []).append(unit)
    tasks = []
    for group in by_job.values():
        job = group[0].job
        for start in range(0, len(group), chunk):
            part = group[start : start + chunk]
            tasks.append(
                {
                    "line": job.line,
                    "id": job.id,
                    "model": job.model,
                    "job": {
                        **job.settings(),
                        "image": job.image,
                        "mask": job.mask,
                        "lora_files": [[path, scale] for path, scale, _ in job.loras],
                        "embedding_files": [path for path, _ in job.embeddings],
                        "controls": [unit.task() for unit in job.controlnets],
                        "guess_mode": job.guess_mode,
                    },
                    "seeds": [u.seed for u in part],
                    "files": [u.file for u in part],
                }
            )
    tasks.sort(key=_task_order)  # stable: job order among jobs with the same model and nets
    return tasks


def _task_order(task: dict) -> tuple:
    return task["model"] or "", [unit["path"] for unit in task["job"]["controls"]]


# -- running tasks (in any process) ------------------------------------------------------------


class TaskRunner:
    """Runs tasks with one loaded pipeline per model, writing each image atomically under the
    output folder; returns per task {"line", "id", "records": [...], "error": str | None}."""

    def __init__(self, out: str | Path, safety_config=None, loader_options: dict | None = None):
        self.out = Path(out)
        self.safety_config = safety_config
        self.loader_options = dict(loader_options or {})
        self._model: object = ()  # the model of the loaded pipeline (None: embedded)
        self._pipeline = None
        self._controlnets: dict = {}  # loaded control nets by path, for this pipeline

    def pipeline(self, model: str | None):
        if self._pipeline is None or self._model != model:
            import paddiff
            from paddiff.control.jobs import NetCache
            from paddiff.safety import load_filters

            self._pipeline = None  # free the last model before loading the next
            self._controlnets = NetCache()  # a single-file net is built for its model's UNet
            model_dir = model if model and Path(model).is_dir() else None
            filters = load_filters(self.safety_config, model_dir=model_dir)
            self._pipeline = paddiff.load_pipeline(
                model, safety_filters=filters, **self.loader_options
            )
            self._model = model
        return self._pipeline

    def __call__(self, task: dict) -> dict:
        import paddiff

        result = {"line": task["line"], "id": task["id"], "records": [], "error": None}
        try:
            output = self._generate(task)
        except (ValueError, paddiff.SafetyBlocked, OSError) as exc:
            # ValidationError (a ValueError): a setting the model refuses (size, scheduler);
            # SafetyBlocked: a refused prompt; OSError: an input that cannot be read.
            result["error"] = str(exc)
            return result
        verdicts = output.verdicts or [None] * len(output.images)
        for image, settings, verdict, file in zip(
            output.images, output.settings, verdicts, task["files"], strict=True
        ):
            result["records"].append(self._write(image, settings, verdict, output, file))
        return result

    def _generate(self, task):
        from paddiff.control.requests import control_arguments

        job = task["job"]
        pipe = self.pipeline(task["model"])
        use_job_adapters(pipe, job.get("lora_files", ()), job.get("embedding_files", ()))
        # exactly this job's control nets (none: the pipeline's are unloaded), each loaded once
        control = control_arguments(
            pipe, job.get("controls", []), job.get("guess_mode", False), self._controlnets
        )
        common = dict(
            negative_prompt=job["negative_prompt"],
            steps=job["steps"],
            guidance_scale=job["guidance"],
            width=job["width"],
            height=job["height"],
            seed=list(task["seeds"]),
            num_images_per_prompt=len(task["seeds"]),
            scheduler=job["scheduler"],
            progress=False,
            **control,
        )
        if job["mode"] == "txt2img":
            return pipe.text_to_image(job["prompt"], **common)
        if job["mode"] == "img2img":
            return pipe.image_to_image(job["prompt"], job["image"], job["strength"], **common)
        return pipe.inpaint(job["prompt"], job["image"], job["mask"], job["strength"], **common)

    def _write(self, image, settings, verdict, output, file: str) -> dict:
        from paddiff.png_info import format_parameters
        from paddiff.serving import jsonable, verdict_json
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("parameters", format_parameters(settings))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        data = buffer.getvalue()
        write_atomic(self.out / file, data)
        return {
            "seed": settings["seed"],
            "file": file,
            "sha256": hashlib.sha256(data).hexdigest(),
            "settings": jsonable(settings),
            "verdicts": {
                "image": verdict_json(verdict),
                "prompt": [verdict_json(v) for v in output.prompt_verdicts],
            },
        }


def use_job_adapters(pipe, loras, embeddings) -> None:
    """Exactly this job's LoRAs (each file loaded once per pipeline, then re-weighted; the
    others disabled) and exactly its embeddings (the others' tokens removed), so that nothing of
    one job's adapters reaches the next job's images."""
    from paddiff.webui import use_adapters

    wanted = {Path(path) for path in embeddings}
    others = [token for token, path in pipe.embeddings.items() if Path(path) not in wanted]
    if others:
        pipe.unload_textual_inversion(others)
    use_adapters(
        pipe, [(Path(path), scale) for path, scale in loras], [Path(p) for p in embeddings]
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name in the same folder, flush to disk, rename: a reader (or a
    rerun) sees the whole file or none. The temporary name is unique per process, so two
    processes writing the same file (a retried task) do not interfere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# -- the output folder -------------------------------------------------------------------------


@dataclass
class Output:
    """DIR/images/, DIR/metadata.jsonl (the manifest), DIR/errors.jsonl, DIR/stale/."""

    root: Path
    units: list[Unit]
    done: dict[str, dict] = field(default_factory=dict)  # file -> record
    stale: list[str] = field(default_factory=list)

    @property
    def metadata_path(self) -> Path:
        return self.root / "metadata.jsonl"

    def resume(self) -> None:
        """Read what an earlier run finished: lines of metadata.jsonl whose file belongs to this
        plan, exists, and has the recorded SHA-256. Then rewrite metadata.jsonl with those
        only, and move images that no unit of this plan names to stale/."""
        wanted = {unit.file for unit in self.units}
        if self.metadata_path.is_file():
            for text in self.metadata_path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(text)
                    file = record["file"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a kill
                if file in wanted and file not in self.done and self._intact(record):
                    self.done[file] = record
        images = self.root / "images"
        if images.is_dir():
            for path in sorted(images.rglob("*")):
                if not path.is_file():
                    continue
                relative = path.relative_to(self.root).as_posix()
                if path.name.startswith(".") and path.name.endswith(".tmp"):
                    path.unlink()  # a write cut short
                elif relative not in wanted:
                    target = self.root / "stale" / path.relative_to(images)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, target)
                    self.stale.append(relative)
        self.rewrite()

    def _intact(self, record) -> bool:
        path = self.root / record["file"]
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest() == record.get("sha256")
        except OSError:
            return False

    def pending(self) -> list[Unit]:
        return [unit for unit in self.units if unit.file not in self.done]

    def add(self, unit: Unit, record: dict, handle) -> None:
        line = metadata_line(unit, record)
        self.done[unit.file] = line
        handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        handle.flush()

    def rewrite(self) -> None:
        """metadata.jsonl in job order, one line per finished unit, with each job's current id
        and labels; written whole and renamed."""
        lines = [
            metadata_line(unit, self.done[unit.file])
            for unit in self.units
            if unit.file in self.done
        ]
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.metadata_path, text.encode("utf-8"))


def metadata_line(unit: Unit, record: dict) -> dict:
    return {
        "id": unit.job.id,
        "labels": unit.job.labels,
        "seed": record["seed"],
        "file": record["file"],
        "sha256": record["sha256"],
        "settings": record["settings"],
        "verdicts": record["verdicts"],
    }


def write_errors(root: Path, errors: list[dict]) -> None:
    lines = sorted(errors, key=lambda error: error["line"])
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    write_atomic(root / "errors.jsonl", text.encode("utf-8"))


# -- the whole batch ---------------------------------------------------------------------------


@dataclass
class Summary:
    total: int = 0  # images the job file asks for (valid jobs)
    already_done: int = 0
    written: int = 0
    failed_images: int = 0
    bad_lines: int = 0
    failed_jobs: int = 0
    stale: int = 0
    seconds: float = 0.0

    def text(self, out: Path) -> str:
        rate = 60 * self.written / self.seconds if self.seconds else 0.0
        return (
            f"batch: {self.written} images written in {self.seconds:.1f} s "
            f"({rate:.1f} images/min), {self.already_done} already done, "
            f"{self.total - self.already_done - self.written} missing; "
            f"{self.bad_lines} bad lines, {self.failed_jobs} failed jobs "
            f"(see {out / 'errors.jsonl'}); {self.stale} images of changed jobs moved to "
            f"{out / 'stale'}\nmetadata: {out / 'metadata.jsonl'}"
        )


#: run_tasks(tasks, on_result) runs every task and calls on_result(result) in this process.
Executor = Callable[[list[dict], Callable[[dict], None]], None]


def run_batch(
    jobs_path: str | Path,
    out: str | Path,
    execute: Executor,
    chunk: int = 4,
    progress: bool = True,
    lora_dir=None,
    controlnet_dir=None,
) -> Summary:
    """Plan, resume, run the pending tasks through `execute`, and record the results.
    `lora_dir`: where the jobs' LoRA names are looked up (default $PADDIFF_LORA_DIR);
    `controlnet_dir`: their control-net names (default $PADDIFF_CONTROLNET_DIR)."""
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)  # held until this function returns (closed with the file)
    jobs, errors = read_jobs(jobs_path, lora_dir, controlnet_dir)
    units = plan_units(jobs)
    output = Output(out, units)
    output.resume()
    write_errors(out, errors)
    summary = Summary(
        total=len(units),
        already_done=len(output.done),
        bad_lines=len(errors),
        stale=len(output.stale),
    )
    pending = output.pending()
    units_by_file = {unit.file: unit for unit in pending}
    tasks = make_tasks(pending, chunk)
    failed: dict[int, dict] = {}
    bar = _progress_bar(len(units), len(output.done), progress)
    try:
        with open(output.metadata_path, "a", encoding="utf-8") as handle:

            def on_result(result: dict) -> None:
                for record in result["records"]:
                    output.add(units_by_file[record["file"]], record, handle)
                    summary.written += 1
                    bar.update(1)
                if result["error"] is not None:
                    failed.setdefault(
                        result["line"],
                        {"line": result["line"], "id": result["id"], "error": result["error"]},
                    )
                elapsed = time.perf_counter() - started
                bar.set_postfix_str(f"{60 * summary.written / max(elapsed, 1e-9):.1f} img/min")

            execute(tasks, on_result)
    finally:
        bar.close()
        output.rewrite()
        write_errors(out, errors + list(failed.values()))
        summary.failed_jobs = len(failed)
        summary.failed_images = len(output.pending())
        summary.seconds = time.perf_counter() - started
        lock.close()
    return summary


def _lock(out: Path):
    """An exclusive lock on DIR/.lock: two `paddiff batch` runs writing one folder would both
    append to metadata.jsonl and move each other's images."""
    import fcntl

    handle = open(out / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OSError(f"another paddiff batch is writing to {out}; wait for it to finish") from None
    return handle


def _progress_bar(total: int, done: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=done, desc="batch", unit="img", disable=not enabled, file=sys.stderr
    )


def run_here(runner: TaskRunner) -> Executor:
    """Run tasks one after another in this process."""

    def execute(tasks, on_result):
        for task in tasks:
            on_result(runner(task))

    return execute


def core_shares(workers: int, cores: list[int] | None = None) -> list[list[int]]:
    """Split this process's cores into `workers` contiguous shares (round-robin when there are
    more workers than cores, so each worker has at least one)."""
    if cores is None:
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cores:
        return [[] for _ in range(workers)]
    if workers >= len(cores):
        return [[cores[k % len(cores)]] for k in range(workers)]
    size, extra = divmod(len(cores), workers)
    shares, start = [], 0
    for k in range(workers):
        end = start + size + (1 if k < extra else 0)
        shares.append(cores[start:end])
        start = end
    return shares


def limit_threads(count: int) -> None:
    """Tell the math libraries (and paddiff's predictors) to use `count` threads; to be called
    before Paddle is imported."""
    for variable in ("PADDIFF_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(count)


def run_local(workers: int, runner_options: dict) -> Executor:
    """Run tasks in `workers` processes on this machine, each pinned to its share of the cores
    (`core_shares`) and told to use that many threads.

    Each worker has its own pipe and gets its next task only when it returns the last one, so
    this process always knows which task each worker holds, and a worker killed at any moment
    takes no lock others need (as a queue shared by all workers could). A worker that dies
    (killed, out of memory) is replaced and its task given out again; a task that killed two
    workers is reported as failed."""

    def execute(tasks, on_result):
        import multiprocessing
        from multiprocessing.connection import wait

        context = multiprocessing.get_context(
            "spawn"
        )  # no fork: Paddle's threads do not survive it
        shares = core_shares(workers)
        todo = list(range(len(tasks)))[::-1]  # task indices, the next one last
        processes: dict[int, Any] = {}
        pipes: dict[int, Any] = {}
        holding: dict[int, int] = {}  # worker -> index of the task it holds
        deaths: dict[int, int] = {}  # task index -> workers that died holding it

        def start(k: int) -> None:
            pipes[k], theirs = context.Pipe()
            processes[k] = context.Process(
                target=_worker, args=(shares[k], theirs, runner_options), daemon=True
            )
            processes[k].start()
            theirs.close()
            give(k)

        def give(k: int) -> None:
            if todo:
                holding[k] = todo.pop()
                pipes[k].send(tasks[holding[k]])

        def died(k: int) -> None:
            exitcode = processes.pop(k).exitcode
            pipes.pop(k).close()
            lost = holding.pop(k, None)
            if lost is not None:
                deaths[lost] = deaths.get(lost, 0) + 1
                if deaths[lost] < 2:
                    todo.append(lost)
                else:
                    task = tasks[lost]
                    error = f"a worker process died twice on this job (exit code {exitcode})"
                    on_result(
                        {"line": task["line"], "id": task["id"], "records": [], "error": error}
                    )
            if todo:
                start(k)

        for k in range(min(workers, len(tasks))):
            start(k)
        try:
            while holding or todo:
                ready = wait([*pipes.values(), *(p.sentinel for p in processes.values())])
                for k in list(pipes):
                    if pipes[k] in ready:
                        try:
                            result = pipes[k].recv()
                        except (EOFError, OSError):  # it died, perhaps in the middle of sending
                            processes[k].join(timeout=10)
                            died(k)
                            continue
                        holding.pop(k, None)
                        on_result(result)
                        give(k)
                    elif processes[k].sentinel in ready:
                        died(k)
        finally:
            for k, process in processes.items():
                if process.is_alive():
                    try:
                        pipes[k].send(None)
                    except OSError:
                        pass
            for process in processes.values():
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()

    return execute


def _worker(cores, pipe, runner_options: dict) -> None:
    import warnings

    warnings.filterwarnings("ignore", message="No ccache found")  # Paddle's, on every import
    if cores:
        os.sched_setaffinity(0, cores)
        limit_threads(len(cores))
    runner = TaskRunner(**runner_options)
    while (task := pipe.recv()) is not None:
        pipe.send(runner(task))
