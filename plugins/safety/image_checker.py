"""StableDiffusionSafetyChecker: Stable Diffusion's CLIP-based image checker, in Paddle.

An image is embedded with CLIP's vision tower and projection; its cosine similarity to each of
17 "concept" embeddings and 3 "special care" embeddings, minus that embedding's threshold, is a
score. A special-care score above zero makes the filter stricter for that image (0.01 is added to
the later scores), and any concept score above zero flags the image. Scores are rounded to three
decimals before the comparison, as diffusers does, so verdicts agree with it exactly.

Weights come from a Stable Diffusion model's `safety_checker/` folder (config.json + weights, in
any format `paddiff.weights` reads); preprocessing settings from the sibling `feature_extractor/`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
from paddiff.interfaces import SafetyFilter, Verdict
from paddiff.plugins.safety.clip_preprocess import ClipImageSettings, array_to_pil, preprocess
from paddiff.plugins.safety.clip_vision import CLIPVisionConfig, CLIPVisionTransformer
from paddiff.weights import load_state_dict
from paddle import nn
from PIL import Image

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.fp16.safetensors")
SPECIAL_CARE_ADJUSTMENT = 0.01
# torch Linear weights are [out, in]; Paddle's are [in, out].
LINEAR_WEIGHT = re.compile(
    r"(q_proj|k_proj|v_proj|out_proj|fc1|fc2)\.weight$|^visual_projection\.weight$"
)


class CheckerWeightsError(FileNotFoundError):
    """The checker's weights folder is missing or incomplete."""


class _VisionModel(nn.Layer):
    """transformers 4.x nests the transformer inside CLIPVisionModel as `.vision_model`; SD's
    checkpoints keep that nesting (`vision_model.vision_model.encoder...`)."""

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.vision_model = CLIPVisionTransformer(config)


class CheckerNetwork(nn.Layer):
    """The parameters of diffusers' StableDiffusionSafetyChecker, under the same names."""

    def __init__(self, vision: CLIPVisionConfig, projection_dim: int, concepts: int, special: int):
        super().__init__()
        self.vision_model = _VisionModel(vision)
        self.visual_projection = nn.Linear(vision.hidden_size, projection_dim, bias_attr=False)
        self.concept_embeds = self.create_parameter([concepts, projection_dim])
        self.special_care_embeds = self.create_parameter([special, projection_dim])
        self.concept_embeds_weights = self.create_parameter([concepts])
        self.special_care_embeds_weights = self.create_parameter([special])

    def forward(self, pixel_values: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """Cosine similarities (the reference calls them distances) to the special-care and
        concept embeddings, each (N, number of embeddings)."""
        embeds = F.normalize(self.visual_projection(self.vision_model.vision_model(pixel_values)))
        special = paddle.matmul(embeds, F.normalize(self.special_care_embeds), transpose_y=True)
        concept = paddle.matmul(embeds, F.normalize(self.concept_embeds), transpose_y=True)
        return special, concept


def paddle_state_dict(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Checkpoint keys and layouts -> CheckerNetwork's."""
    converted = {}
    for key, value in raw.items():
        if key.endswith("position_ids"):  # an arange buffer that older checkpoints saved
            continue
        if key.startswith("vision_model.") and not key.startswith("vision_model.vision_model."):
            key = "vision_model." + key  # transformers 5 saves CLIPVisionModel without nesting
        value = np.asarray(value, dtype=np.float32)
        converted[key] = value.T if LINEAR_WEIGHT.search(key) else value
    return converted


def load_network(folder: Path) -> CheckerNetwork:
    config_path = folder / "config.json"
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if not config_path.is_file() or weights is None:
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise CheckerWeightsError(
            f"no image safety checker in {folder}: expected config.json and one of "
            f"{', '.join(WEIGHT_FILES)} (a Stable Diffusion model's safety_checker/ folder); "
            f"found {present or 'nothing'}. Without them image checking is off."
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    state = paddle_state_dict(load_state_dict(weights))
    counts = {k: state[k].shape[0] for k in ("concept_embeds", "special_care_embeds") if k in state}
    # Older SD checkpoints (transformers 4.2x) also write "vision_config_dict", which wins.
    vision = {**(config.get("vision_config") or {}), **(config.get("vision_config_dict") or {})}
    network = CheckerNetwork(
        CLIPVisionConfig.from_dict(vision),
        config.get("projection_dim", 512),
        counts.get("concept_embeds", 17),
        counts.get("special_care_embeds", 3),
    )
    expected = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    _check_keys(expected, state, weights)
    network.set_state_dict({key: paddle.to_tensor(value) for key, value in state.items()})
    network.eval()
    return network


def _check_keys(expected: dict[str, tuple], state: dict[str, np.ndarray], source: Path) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != expected[k]
    )
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source}: weights do not fit the safety checker: missing {missing}, "
            f"unexpected {unexpected}, wrong shape {wrong}"
        )


def judge(
    special: np.ndarray,
    concept: np.ndarray,
    special_thresholds: np.ndarray,
    concept_thresholds: np.ndarray,
    adjustment: float = 0.0,
) -> list[dict]:
    """Scores and decision per image, computed in float32 exactly as diffusers' checker does.

    Once a special-care score is positive, the adjustment rises by 0.01 for every score after it
    (the remaining special-care scores and all concept scores): the reference's order matters.
    """
    results = []
    for image_special, image_concept in zip(special, concept, strict=True):
        adjust = np.float32(adjustment)
        special_scores, concept_scores, special_care, bad = [], [], [], []
        for index, (cos, threshold) in enumerate(
            zip(image_special, special_thresholds, strict=True)
        ):
            score = np.float32(cos) - np.float32(threshold) + adjust
            special_scores.append(float(score))
            if round(score, 3) > 0:
                special_care.append(index)
                adjust = np.float32(adjustment + SPECIAL_CARE_ADJUSTMENT)
        for index, (cos, threshold) in enumerate(
            zip(image_concept, concept_thresholds, strict=True)
        ):
            score = np.float32(cos) - np.float32(threshold) + adjust
            concept_scores.append(float(score))
            if round(score, 3) > 0:
                bad.append(index)
        results.append(
            {
                "special_scores": special_scores,
                "concept_scores": concept_scores,
                "special_care": special_care,
                "bad_concepts": bad,
            }
        )
    return results


class StableDiffusionSafetyChecker(SafetyFilter):
    """Flags generated images with SD's CLIP safety checker; allows every prompt."""

    name = "StableDiffusionSafetyChecker"
    checks = ("images",)  # what paddiff.safety runs it on
    category = "nsfw"

    def __init__(
        self,
        network: CheckerNetwork,
        settings: ClipImageSettings | None = None,
        replacement: str = "black",
        adjustment: float = 0.0,
    ):
        if replacement not in ("black", "none"):
            raise ValueError(f"replacement must be 'black' or 'none', got {replacement!r}")
        self.network = network
        self.settings = settings or ClipImageSettings()
        self.replacement = replacement
        self.adjustment = float(adjustment)
        # Any number of images per call; paddiff.execution chooses how the network runs.
        from paddiff.execution import InputSpec, Network

        size = (self.settings.crop_height, self.settings.crop_width)
        self.runner = Network(
            "safety_checker", network, [InputSpec("pixel_values", (None, 3, *size))]
        )

    @classmethod
    def from_pretrained(
        cls, path: str | Path, feature_extractor: str | Path | None = None, **options
    ) -> StableDiffusionSafetyChecker:
        """Load from a `safety_checker/` folder; preprocessing settings from
        `feature_extractor` (a preprocessor_config.json or its folder), by default the sibling
        `feature_extractor/` folder, else CLIP's defaults at the vision model's image size."""
        folder = Path(path)
        if not folder.exists():
            raise CheckerWeightsError(
                f"image safety checker weights not found: {folder} does not exist (expected a "
                "Stable Diffusion model's safety_checker/ folder). Without them image checking "
                "is off."
            )
        network = load_network(folder)
        processor = (
            Path(feature_extractor) if feature_extractor else folder.parent / "feature_extractor"
        )
        if processor.is_dir():
            processor = processor / "preprocessor_config.json"
        if processor.is_file():
            settings = ClipImageSettings.from_json(processor)
        elif feature_extractor:
            raise FileNotFoundError(f"preprocessor config not found: {processor}")
        else:
            size = network.vision_model.vision_model.embeddings.image_size
            settings = ClipImageSettings(shortest_edge=size, crop_height=size, crop_width=size)
        return cls(network, settings, **options)

    @classmethod
    def from_config(cls, config: dict) -> StableDiffusionSafetyChecker:
        """Options: `weights` (the safety_checker/ folder, required), `feature_extractor`,
        `replacement` ('black' or 'none'), `adjustment` (raise to flag more images)."""
        unknown = set(config) - {
            "name",
            "weights",
            "feature_extractor",
            "replacement",
            "adjustment",
        }
        if unknown:
            raise ValueError(f"StableDiffusionSafetyChecker: unknown option(s) {sorted(unknown)}")
        if not config.get("weights"):
            raise CheckerWeightsError(
                "StableDiffusionSafetyChecker needs 'weights': the path of a safety_checker/ folder"
            )
        options = {k: config[k] for k in ("replacement", "adjustment") if k in config}
        return cls.from_pretrained(config["weights"], config.get("feature_extractor"), **options)

    # -- checking ----------------------------------------------------------------------------

    def scores(self, images) -> list[dict]:
        """Per image: special_scores, concept_scores, special_care, bad_concepts."""
        pil_images = _as_pil(images)
        if not pil_images:
            return []
        # the thresholds (the *_weights) are not inputs of the network, so an exported program
        # does not take them from the Layer
        special, concept = self.runner(preprocess(pil_images, self.settings))
        return judge(
            special,
            concept,
            self.network.special_care_embeds_weights.numpy(),
            self.network.concept_embeds_weights.numpy(),
            self.adjustment,
        )

    def networks(self) -> list:
        """What runs this filter (paddiff.execution decides how)."""
        return [self.runner]

    def check_prompt(self, text: str) -> Verdict:
        return Verdict(allowed=True, filter=self.name)

    def check_images(self, images) -> list[Verdict]:
        return [self._verdict(result) for result in self.scores(images)]

    def filter_images(self, images):
        """(images with flagged ones replaced, verdicts). Images are PIL images or an NCHW
        array in [-1, 1]; the same kind comes back. Flagged images become black unless
        `replacement` is 'none'."""
        verdicts = self.check_images(images)
        if self.replacement == "none" or all(v.allowed for v in verdicts):
            return images, verdicts
        if isinstance(images, np.ndarray):
            images = images.copy()
            for index, verdict in enumerate(verdicts):
                if not verdict.allowed:
                    images[index] = -1.0  # black in [-1, 1]
            return images, verdicts
        replaced = [
            image if verdict.allowed else Image.new(image.mode, image.size)
            for image, verdict in zip(images, verdicts, strict=True)
        ]
        return replaced, verdicts

    def _verdict(self, result: dict) -> Verdict:
        flagged = bool(result["bad_concepts"])
        return Verdict(
            allowed=not flagged,
            reason=f"the image was flagged as '{self.category}' by the image checker"
            if flagged
            else "",
            category=self.category if flagged else None,
            filter=self.name,
            details=result,
        )


def _as_pil(images) -> list[Image.Image]:
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images as an (N, 3, H, W) array, got shape {images.shape}")
        return array_to_pil(images)
    return list(images)
