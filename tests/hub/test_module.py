"""The PaddleHub module, as users meet it: `hub install`, `hub.Module`, `hub run`, `hub serving`.

Every PaddleHub step runs in a fresh process with a fresh temporary HUB_HOME and a working
directory outside the repository. One module install and one server are shared by the tests.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import paddiff
import pytest
from paddiff.plugins.embedded import evaluate
from paddiff.serving import ServingLimits
from PIL import Image

from support.processes import free_port, hub_command, stop_process_group

ROOT = Path(__file__).resolve().parents[2]
HUB_MODULE = ROOT / "hub_module" / "paddiff"
# `model=` is tested with this tiny random-weight SD 1.x folder (32x32); everything else uses the
# module's default, the embedded model, as a user who installs the module meets it.
MODEL = ROOT / "tests" / "fixtures" / "sd" / "sd1"
TIMEOUT = 180  # seconds for any one PaddleHub command


@pytest.fixture(scope="module")
def hub_env(tmp_path_factory) -> dict:
    """Environment with a fresh HUB_HOME in which `hub install hub_module/paddiff` has run."""
    home = tmp_path_factory.mktemp("hub-home")
    env = dict(os.environ, HUB_HOME=str(home))
    for variable in [*ServingLimits.ENV, "PADDIFF_SAFETY_CONFIG", "PADDIFF_MODEL"]:
        env.pop(variable, None)
    installed = subprocess.run(
        [*hub_command(), "install", str(HUB_MODULE)],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (home / "modules" / "paddiff" / "module.py").is_file()
    return env


def run_python(code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


IMPORT_ORDER_SCRIPT = """
    import json, sys
    if sys.argv[1] == "library-first":
        import paddiff
    import paddle
    import paddlehub as hub

    module = hub.Module(name="paddiff", model=sys.argv[2], scheduler="EulerAncestralDiscreteScheduler")
    import paddiff
    import paddiff.serving

    # The pipeline is dygraph code: called in static mode it fails ...
    paddle.enable_static()
    try:
        module.pipeline.text_to_image("cat", seed=1, progress=False)
        raw_static_call = "worked"
    except Exception as exc:
        raw_static_call = type(exc).__name__
    # ... while the module's methods switch to dynamic mode for the call and back.
    static_call = len(module.text_to_image("a cat", steps=2, seed=1))
    still_static = not paddle.in_dynamic_mode()
    paddle.disable_static()
    # PaddleHub's static-mode wrapper, which leaves static mode on when a method raises, is
    # bypassed: a failed call leaves the caller in dynamic mode.
    try:
        module.text_to_image(5, steps=2)
    except Exception as exc:
        bad_call = type(exc).__name__
    first = module.text_to_image("a cat", steps=3, seed=7, num_images=2)
    again = module.text_to_image("a cat", steps=3, seed=7)
    # Images as NumPy arrays, file paths and base64 text.
    import base64, numpy
    first[0]["image"].save("start.png")
    start = numpy.asarray(first[0]["image"])
    mask = numpy.zeros((32, 32), numpy.uint8)
    mask[8:24, 8:24] = 255
    varied = module.image_to_image("a dog", start, strength=0.5, steps=4, seed=9)
    from_path = module.image_to_image("a dog", "start.png", strength=0.5, steps=4, seed=9)
    as_text = base64.b64encode(open("start.png", "rb").read()).decode()
    painted = module.inpaint("a hat", as_text, mask, steps=4, seed=9)

    class NoCats:  # a safety filter: the refusal must name its category
        def check_prompt(self, text):
            return paddiff.Verdict(allowed="cat" not in text, category="animals", filter="nocats")

        def check_images(self, images):
            return [paddiff.Verdict(allowed=True) for _ in images]

    strict = hub.Module(name="paddiff", safety_filters=[NoCats()])
    try:
        strict.serve(prompt="a cat", steps=2)
        refusal = "none"
    except ValueError as exc:
        refusal = str(exc)
    print(json.dumps({
        "library": paddiff.__file__,
        "has_api": hasattr(paddiff, "register") and hasattr(paddiff.serving, "parse_request"),
        "module": type(module).__module__ + "." + type(module).__name__,
        "raw_static_call": raw_static_call,
        "seeds": [item["seed"] for item in first],
        "sizes": [list(item["image"].size) for item in first],
        "native_size": list(module.pipeline.native_size()),
        "settings_model": first[0]["settings"]["model"],
        "settings_scheduler": first[0]["settings"]["scheduler"],
        "repeatable": first[0]["image"].tobytes() == again[0]["image"].tobytes(),
        "image_inputs": [varied[0]["settings"]["mode"], painted[0]["settings"]["mode"]],
        "path_equals_array": varied[0]["image"].tobytes() == from_path[0]["image"].tobytes(),
        "static_call": static_call,
        "still_static": still_static,
        "bad_call": bad_call,
        "dynamic_after": paddle.in_dynamic_mode(),
        "refusal": refusal,
        "default_model": strict.pipeline.model_name,
    }))
"""


@pytest.mark.parametrize("order", ["library-first", "hub-first"])
def test_hub_module_loads_in_a_new_process_in_either_import_order(hub_env, tmp_path, order):
    script = tmp_path / "use_module.py"
    script.write_text(textwrap.dedent(IMPORT_ORDER_SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script), order, str(MODEL)],
        cwd=tmp_path,
        env=hub_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # `import paddiff` is the library, never the module folder of the same name.
    assert Path(report["library"]).resolve() == Path(paddiff.__file__).resolve()
    assert report["has_api"] and report["module"] == "paddiff.module.Paddiff"
    assert report["raw_static_call"] != "worked"
    assert report["static_call"] == 1 and report["still_static"]
    assert report["bad_call"] == "ValidationError"
    assert report["seeds"] == [7, 8] and report["sizes"] == [report["native_size"]] * 2
    assert report["settings_model"] == "sd1" and report["default_model"] == "paddiff-embedded"
    assert report["settings_scheduler"] == "EulerAncestralDiscreteScheduler"
    assert report["repeatable"] and report["dynamic_after"]
    assert report["image_inputs"] == ["img2img", "inpaint"] and report["path_equals_array"]
    assert report["refusal"] == "the prompt was refused by the safety filter (category: animals)"


def test_module_folder_without_the_library_says_what_to_install(hub_env, tmp_path):
    # A Python that cannot import the library (only the module folder is on its path).
    env = dict(hub_env, PYTHONPATH=str(Path(hub_env["HUB_HOME"]) / "modules"))
    done = subprocess.run(
        [sys.executable, "-S", "-c", "import paddiff"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "needs the paddiff library installed" in done.stderr


def test_hub_run_writes_pngs_with_their_settings(hub_env, tmp_path):
    done = subprocess.run(
        [*hub_command(), "run", "paddiff", "--prompt", "一只猫", "--output_dir", "out"]
        + ["--steps", "8", "--seed", "1", "--num_images", "2"],
        cwd=tmp_path,
        env=hub_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    written = sorted((tmp_path / "out").glob("*.png"))
    assert len(written) == 2
    for path, seed in zip(written, (1, 2), strict=True):
        assert path.name in done.stdout
        parameters = paddiff.read_parameters(path)
        assert parameters["prompt"] == "一只猫" and parameters["Seed"] == str(seed)
        assert parameters["Steps"] == "8"


def test_hub_run_reports_a_mistake_in_one_line_without_a_traceback(hub_env, tmp_path):
    done = subprocess.run(
        [*hub_command(), "run", "paddiff", "--prompt", "一只猫", "--image", "typo.png"],
        cwd=tmp_path,
        env=hub_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 1
    assert "paddiff: error: image file not found: typo.png" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


# -- hub serving -------------------------------------------------------------------------------

SERVER_LIMITS = {
    "PADDIFF_MAX_STEPS": "20",
    "PADDIFF_MAX_IMAGES": "2",
    "PADDIFF_MAX_PIXELS": str(64 * 64),
    "PADDIFF_MAX_PROMPT_CHARS": "200",
    "PADDIFF_MAX_BODY_BYTES": "200000",
    "PADDIFF_ALLOWED_SCHEDULERS": "DDIMScheduler,EulerDiscreteScheduler",
}


class Server:
    def __init__(self, port: int, process: subprocess.Popen, log: Path):
        self.url = f"http://127.0.0.1:{port}/predict/paddiff"
        self.index = f"http://127.0.0.1:{port}/"
        self.process, self.log = process, log

    def post(self, body, timeout=120) -> tuple[int, bytes]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url, data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def predict(self, body) -> dict:
        status, payload = self.post(body)
        assert status == 200, payload[:500]
        return json.loads(payload)


@pytest.fixture(scope="module")
def server(hub_env, tmp_path_factory):
    """A real `hub serving start -m paddiff -p PORT` process; always stopped at the end."""
    workdir = tmp_path_factory.mktemp("serving")
    port = free_port()
    log = workdir / "server.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [*hub_command(), "serving", "start", "-m", "paddiff", "-p", str(port)],
            cwd=workdir,
            env=dict(hub_env, **SERVER_LIMITS),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so teardown stops all it started
        )
    try:
        served = Server(port, process, log)
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert process.poll() is None, f"server exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"server not ready:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(served.index, timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield served
    finally:
        stop_process_group(process)


def decode(image_base64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(image_base64))))


def png_base64(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_serving_answers_json_with_base64_pngs_seeds_and_settings(server):
    reply = server.predict({"prompt": "一只猫", "steps": 4, "seed": 11, "num_images": 2})
    assert reply["status"] == "000" and reply["msg"] == ""
    images = reply["results"]["images"]
    assert [item["seed"] for item in images] == [11, 12]
    for item in images:
        size = (item["settings"]["height"], item["settings"]["width"], 3)
        assert decode(item["image"]).shape == size
        assert item["settings"]["prompt"] == "一只猫" and item["settings"]["steps"] == 4
        assert item["settings"]["seed"] == item["seed"]
        assert item["safety"]["allowed"] is True
    assert all(verdict["allowed"] for verdict in reply["results"]["prompt_verdicts"])
    # The embedded model knows no cats, and says so in the prompt's language.
    [warning] = reply["results"]["prompt_warnings"]
    assert "猫" in warning and "不认识" in warning


def test_serving_draws_what_the_prompt_asks_with_the_embedded_model(server):
    # The server's default model is the embedded one: a 64x64 picture of the requested shape.
    for prompt in ("蓝色背景上的一个红色圆形", "a yellow star on a black background"):
        reply = server.predict({"prompt": prompt, "steps": 8, "seed": 3})
        item = reply["results"]["images"][0]
        assert item["settings"]["model"] == "paddiff-embedded"
        reading = evaluate.read_colours(decode(item["image"])[:, :, :3])
        wanted = ("red", "blue") if prompt.startswith("蓝") else ("yellow", "black")
        assert (reading.fg, reading.bg) == wanted, prompt


def test_serving_refuses_a_blocked_prompt_naming_only_the_category(server):
    # The shipped term lists are on by default (paddiff.safety.load_filters with no config).
    reply = server.predict({"prompt": "a scene full of gore", "steps": 2, "seed": 1})
    assert reply["status"] == "101" and reply["results"] == ""
    assert reply["msg"] == "the prompt was refused by the safety filter (category: violence)"
    reply = server.predict({"prompt": "a cat", "negative_prompt": "血腥 gore", "steps": 2})
    assert "negative prompt was refused" in reply["msg"] and "gore" not in reply["msg"]
    assert server.predict({"prompt": "a cat", "steps": 2})["status"] == "000"


def test_serving_image_to_image_and_inpaint(server):
    image = png_base64(32, 48)
    reply = server.predict({"prompt": "cat", "steps": 2, "seed": 1, "image": image})
    assert decode(reply["results"]["images"][0]["image"]).shape == (48, 32, 3)
    reply = server.predict(
        {"prompt": "cat", "steps": 2, "seed": 1, "image": image, "mask_image": image}
    )
    assert reply["status"] == "000", reply["msg"]


BAD_REQUESTS = [
    ({"steps": 4}, "'prompt' is required"),
    ({"prompt": 3}, "'prompt' must be a string"),
    ({"prompt": "cat", "steps": "many"}, "'steps' must be an integer"),
    ({"prompt": "cat", "steps": -4}, "'steps' must be between 1 and 20"),
    ({"prompt": "cat", "steps": 10**9}, "'steps' must be between 1 and 20"),
    ({"prompt": "cat", "num_images": 3}, "'num_images' must be between 1 and 2"),
    ({"prompt": "cat", "width": 4096, "height": 4096}, "this server allows at most 4096"),
    ({"prompt": "cat", "width": 1024}, "width*height is 1024x"),  # x the model's height
    ({"prompt": "cat", "width": 36}, "multiple"),  # the pipeline's own check
    ({"prompt": "x" * 201}, "'prompt' has 201 characters"),
    ({"prompt": "cat", "scheduler": "LMSDiscreteScheduler"}, "is not allowed"),
    ({"prompt": "cat", "image": "%%% not base64"}, "'image' is not valid base64"),
    ({"prompt": "cat", "image": base64.b64encode(b"GIF? no").decode()}, "not an image"),
    ({"prompt": "cat", "colour": "red"}, "unknown field(s) colour"),
    ({"prompt": "a" * 150, "negative_prompt": "b" * 250_000}, "the body is"),
]


def test_bad_requests_get_error_replies_and_the_server_keeps_serving(server):
    for body, message in BAD_REQUESTS:
        reply = server.predict(body)
        assert reply["status"] != "000", body
        assert message in reply["msg"], (message, reply["msg"])
        assert reply["msg"].startswith("invalid request: ")
    # Not JSON at all, and JSON that is not an object: Flask/PaddleHub answer with HTTP errors.
    assert server.post(b'{"prompt": ')[0] == 400
    assert server.post(b"[1, 2]")[0] == 500
    assert server.process.poll() is None
    reply = server.predict({"prompt": "still here", "steps": 2, "seed": 5})
    assert reply["status"] == "000" and reply["results"]["images"][0]["seed"] == 5


def test_eight_concurrent_requests_each_get_their_own_serial_result(server):
    bodies = [
        {"prompt": f"request {index}", "steps": 3, "seed": 100 + index, "num_images": 1}
        for index in range(8)
    ]
    serial = [server.predict(body)["results"]["images"][0] for body in bodies]
    order = list(range(8))
    random.Random(0).shuffle(order)
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda i: (i, server.predict(bodies[i])), order))
    assert len(replies) == 8
    for index, reply in replies:
        assert reply["status"] == "000", reply["msg"]
        image = reply["results"]["images"][0]
        assert image["seed"] == 100 + index
        assert image["settings"]["prompt"] == f"request {index}"
        assert np.array_equal(decode(image["image"]), decode(serial[index]["image"]))
    distinct = {decode(serial[i]["image"]).tobytes() for i in range(8)}
    assert len(distinct) == 8
