"""The denoising objective with the model's own noise schedule and prediction type.

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps          (DDPM, Ho et al. 2020, eq. 4)
    target = eps (epsilon), sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (v_prediction, Salimans &
             Ho 2022), or x_0 (sample)

abar_t comes from the scheduler the model ships (its training sigmas: abar = 1 / (1 + sigma^2)),
the prediction type from the denoiser, so a LoRA learns what the pipeline will ask of it.
"""

from __future__ import annotations

import numpy as np

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def alphas_cumprod(scheduler) -> np.ndarray:
    """abar_t for every training timestep of the model's scheduler (either scheduler form)."""
    if hasattr(scheduler, "schedule"):  # a configured sampler (the built-ins' form)
        sigmas = np.asarray(scheduler.schedule(10).train_sigmas, np.float64)
        return 1.0 / (1.0 + sigmas**2)
    found = getattr(scheduler, "alphas_cumprod", None)  # a diffusers-protocol scheduler
    if found is None:
        raise ValueError(
            f"{type(scheduler).__name__}: cannot read the training noise schedule (neither "
            "train_sigmas nor alphas_cumprod)"
        )
    return np.asarray(found, np.float64)


def noised(x0: np.ndarray, noise: np.ndarray, timesteps: np.ndarray, abar: np.ndarray):
    """(x_t, target-independent coefficients sqrt(abar_t), sqrt(1 - abar_t)) for a batch."""
    a = abar[timesteps].astype(np.float32)[:, None, None, None]
    signal, spread = np.sqrt(a), np.sqrt(1.0 - a)
    return signal * x0 + spread * noise, signal, spread


def target(x0, noise, signal, spread, prediction_type: str) -> np.ndarray:
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return signal * noise - spread * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(
        f"cannot train a model whose prediction type is {prediction_type!r} "
        f"(known: {', '.join(PREDICTION_TYPES)})"
    )


class Conditioning:
    """Text conditioning through the text encoder's own `encode`, with gradients when its
    LoRA is trained.

    `encode` turns prompts into the arrays its network takes (token ids, and for BERT
    positions and a mask bias) and calls the network's runner; here the runner is stood in for
    once to record those arrays, and the network's Paddle layer is then called on them in the
    dynamic graph, so tokenization, padding and clip-skip are exactly the pipeline's."""

    def __init__(self, text_encoder, trained: bool):
        self.encoder = text_encoder
        self.network = text_encoder.networks()[0]
        self.trained = trained

    def inputs(self, prompts: list[str]) -> tuple:
        recorded = []

        def record(*arrays):
            recorded.append(arrays)
            return np.zeros((len(prompts), 1, 1), np.float32)

        owner = next(
            (name for name, value in vars(self.encoder).items() if value is self.network), None
        )
        if owner is None:
            raise ValueError(
                f"{type(self.encoder).__name__} does not keep its network as an attribute; "
                "cannot train through its encode()"
            )
        setattr(self.encoder, owner, _Recorder(record))
        try:
            self.encoder.encode(list(prompts))
        finally:
            setattr(self.encoder, owner, self.network)
        return recorded[0]

    def __call__(self, prompts: list[str]):
        import paddle

        tensors = [paddle.to_tensor(np.ascontiguousarray(a)) for a in self.inputs(prompts)]
        if self.trained:
            return self.network.layer(*tensors)
        with paddle.no_grad():
            return self.network.layer(*tensors)


class _Recorder:
    def __init__(self, function):
        self.function = function

    def __call__(self, *arrays):
        return self.function(*arrays)
