"""How long PromptTermFilter.check_prompt takes with a large term list.

Generates TERMS terms (seeded: Latin words of 4-12 letters, two-word phrases and Chinese terms of
2-4 characters), loads them with the shipped default lists through the same parser operators use,
then times check_prompt on PROMPT_CHARS-character prompts mixing English, Chinese, separators and
listed terms (about a third of the prompts contain a listed term). Prints p50/p99/max per check,
as wall-clock time and as the thread's CPU time: on a shared machine the wall-clock tail mostly
measures time slices given to other processes, which the CPU-time figure leaves out.

    .venv/bin/python benchmarks/prompt_filter.py [--terms 10000] [--prompts 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

from paddiff.plugins.safety.prompt_filter import PromptTermFilter
from paddiff.plugins.safety.term_lists import DEFAULT_TERM_FILES, parse_terms, read_term_file

LETTERS = "abcdefghijklmnopqrstuvwxyz"
CHINESE = "的一是在人有我他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴急"  # noqa: E501
WORDS = (
    "a portrait of an old fisherman, oil on canvas, dramatic lighting, highly detailed, "
    "trending on artstation, 4k, cinematic, misty mountains at dawn, a cat wearing a hat, "
    "watercolor, ink wash painting, cyberpunk city street at night, neon reflections"
).split()


def generate_terms(count: int, rng: random.Random) -> str:
    """A term list in the documented format, COUNT terms in a few categories."""
    lines = []
    for index in range(count):
        if index % 100 == 0:
            lines.append(f"# category: generated_{index // 100 % 7}")
        kind = rng.random()
        if kind < 0.5:
            term = "".join(rng.choices(LETTERS, k=rng.randint(4, 12)))
        elif kind < 0.7:
            term = " ".join("".join(rng.choices(LETTERS, k=rng.randint(3, 7))) for _ in "ab")
        else:
            term = "".join(rng.choices(CHINESE, k=rng.randint(2, 4)))
        lines.append(term)
    return "\n".join(lines) + "\n"


def generate_prompt(length: int, terms: list[str], rng: random.Random) -> str:
    pieces: list[str] = []
    with_term = rng.random() < 0.33
    while sum(map(len, pieces)) < length:
        roll = rng.random()
        if with_term and roll < 0.05:
            pieces.append(rng.choice(terms))
        elif roll < 0.6:
            pieces.append(rng.choice(WORDS))
        else:
            pieces.append("".join(rng.choices(CHINESE, k=rng.randint(2, 6))) + "，")
    return " ".join(pieces)[:length]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terms", type=int, default=10_000)
    parser.add_argument("--prompts", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chars", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    term_text = generate_terms(args.terms, rng)
    terms = parse_terms(term_text, "generated")
    terms += [t for path in DEFAULT_TERM_FILES for t in read_term_file(path)]
    started = time.perf_counter()
    prompt_filter = PromptTermFilter(terms)
    build_seconds = time.perf_counter() - started

    listed = [t.text for t in terms if not t.allow]
    prompts = [generate_prompt(args.chars, listed, rng) for _ in range(args.prompts)]
    for prompt in prompts:  # warm-up: fills the per-character normalisation cache
        prompt_filter.check_prompt(prompt)

    wall, cpu = [], []
    blocked = 0
    for _ in range(args.repeats):
        for prompt in prompts:
            started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
            verdict = prompt_filter.check_prompt(prompt)
            cpu.append((time.thread_time_ns() - started_cpu) / 1e6)
            wall.append((time.perf_counter_ns() - started) / 1e6)
            blocked += not verdict.allowed
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"terms loaded: {prompt_filter.term_count} (build {build_seconds:.2f} s)")
    print(f"checks: {len(wall)} of {args.chars}-character prompts, {blocked} blocked")
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for label, timings in (("wall-clock", wall), ("thread CPU", cpu)):
        timings.sort()
        p99 = timings[int(0.99 * (len(timings) - 1))]
        print(
            f"check_prompt {label} ms: p50 {statistics.median(timings):.3f}  p99 {p99:.3f}  "
            f"max {timings[-1]:.3f}"
        )


if __name__ == "__main__":
    main()
