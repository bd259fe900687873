"""Time paddiff's Chinese text encoders at published sizes (random weights; nothing downloaded).

    .venv/bin/python benchmarks/chinese_text_encoders.py    # paddiff: dynamic graph, then exported
    /work/venv-ref/bin/python benchmarks/chinese_text_encoders.py --torch   # transformers, same shapes

Shapes: Taiyi's BERT (hidden 768, 12 layers, 512 tokens) and AltDiffusion's XLM-R large (hidden
1024, 24 layers, 77 tokens, projection to 768), batch 2 (a prompt and the empty prompt, as
classifier-free guidance encodes them). The vocabularies are cut to 1,000 entries: the lookup
does not change the time, and the full XLM-R embedding alone is 1 GB. Also times loading a
250,002-piece SentencePiece model (XLM-R's size, synthetic pieces) and tokenizing with it.
Prints the median of 5 runs after one warm-up.
"""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

import numpy as np

TAIYI = dict(
    vocab_size=1000,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=512,
    type_vocab_size=2,
)
ALT = dict(
    vocab_size=1000,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    max_position_embeddings=514,
    type_vocab_size=1,
    pad_token_id=1,
    layer_norm_eps=1e-5,
    project_dim=768,
)
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "chinese"


def median_seconds(run, repeats: int = 5) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def ids(length: int, pad: int, vocab: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(0)
    out = np.full((2, length), pad, dtype=np.int64)
    out[0, :20] = rng.integers(5, vocab, 20)  # a 20-token prompt and an empty one, padded
    out[1, :2] = [2, 3]
    return out


def paddiff_times() -> None:
    import tempfile

    from paddiff.execution.cache import ExportCache
    from paddiff.plugins.text_encoders.bert import BertModel, attention_bias
    from paddiff.plugins.text_encoders.wordpiece import WordPieceTokenizer
    from paddiff.plugins.text_encoders.xlm_roberta import RobertaSeriesModelWithTransformation
    from paddiff.plugins.text_encoders.xlmr_tokenizer import XLMRobertaTokenizer

    bert = BertModel(TAIYI, WordPieceTokenizer.from_folder(FIXTURES / "taiyi_like/tokenizer"), 512)
    tokenizer = XLMRobertaTokenizer.from_folder(FIXTURES / "altdiffusion_like/tokenizer")
    alt = RobertaSeriesModelWithTransformation(ALT, tokenizer, 77)
    taiyi_ids, alt_ids = ids(512, 0), ids(77, 1)
    taiyi_inputs = (
        taiyi_ids,
        np.ascontiguousarray(bert._positions(taiyi_ids)),
        attention_bias(None, taiyi_ids),
    )
    alt_mask = (alt_ids != 1).astype(np.int64)
    alt_inputs = (alt_ids, alt._positions(alt_ids), attention_bias(alt_mask, alt_ids))
    with tempfile.TemporaryDirectory() as cache_dir:
        for mode in ("dynamic", "static"):
            if mode == "static":
                bert.runner.use_static(ExportCache(cache_dir, threads=2))
                alt.runner.use_static(ExportCache(cache_dir, threads=2))
            print(
                f"{mode}: Taiyi BERT, 2 x 512 tokens, no mask: "
                f"{median_seconds(lambda: bert.runner(*taiyi_inputs)):.3f} s"
            )
            print(
                f"{mode}: AltDiffusion XLM-R large, 2 x 77 tokens: "
                f"{median_seconds(lambda: alt.runner(*alt_inputs)):.3f} s"
            )

    model = synthetic_sentencepiece(250_000)
    start = time.perf_counter()
    big = XLMRobertaTokenizer.from_sentencepiece(model)
    print(f"load a 250,002-piece SentencePiece model: {time.perf_counter() - start:.2f} s")
    prompt = "一只可爱的小猫，高清，油画, a cute cat, highly detailed, trending on artstation " * 3
    print(
        f"tokenize a {len(prompt)}-character prompt with it: "
        f"{median_seconds(lambda: big([prompt], 77)) * 1000:.1f} ms"
    )


def synthetic_sentencepiece(count: int) -> bytes:
    """A ModelProto with `count` pieces (short random strings, scores descending), no charsmap."""
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz的一是不了人我在有他这为之大来以个中上们到说")

    def message(piece: str, score: float) -> bytes:
        text = piece.encode("utf-8")
        body = b"\x0a" + varint(len(text)) + text + b"\x15" + struct.pack("<f", score)
        return b"\x0a" + varint(len(body)) + body

    pieces = ["<unk>", "<s>", "</s>"] + [
        "▁" + "".join(rng.choice(alphabet, rng.integers(1, 8))) for _ in range(count - 3)
    ]
    return b"".join(message(p, -float(i) / 1000) for i, p in enumerate(pieces))


def varint(value: int) -> bytes:
    out = b""
    while value >= 0x80:
        out += bytes([value & 0x7F | 0x80])
        value >>= 7
    return out + bytes([value])


def torch_times() -> None:
    import torch
    from diffusers.pipelines.deprecated.alt_diffusion.modeling_roberta_series import (
        RobertaSeriesConfig,
        RobertaSeriesModelWithTransformation,
    )
    from transformers import BertConfig, BertModel

    torch.set_num_threads(2)
    bert = BertModel(BertConfig(**TAIYI)).eval()
    taiyi_ids = torch.from_numpy(ids(512, 0))
    with torch.no_grad():
        print(f"torch Taiyi BERT, 2 x 512 tokens: {median_seconds(lambda: bert(taiyi_ids)):.3f} s")
        alt = RobertaSeriesModelWithTransformation(RobertaSeriesConfig(**ALT)).eval()
        alt_ids = torch.from_numpy(ids(77, 1))
        mask = (alt_ids != 1).long()
        print(
            f"torch AltDiffusion XLM-R large, 2 x 77 tokens: "
            f"{median_seconds(lambda: alt(alt_ids, attention_mask=mask)):.3f} s"
        )


if __name__ == "__main__":
    torch_times() if "--torch" in sys.argv else paddiff_times()
