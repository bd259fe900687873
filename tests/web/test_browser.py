"""The web page in a real browser: `hub serving start -m paddiff` on loopback, `/gradio/paddiff`
opened in Debian's headless Chromium (driven by its chromedriver through selenium), one
generation with the embedded model, a refused prompt and a bad setting, inpainting, and a
generation steered by the embedded model's control net.

Chromium comes from `.ci/install-chromium` (run by `make test`). Without it the test skips, except
under CI (CI=true), where it fails. PADDIFF_SCREENSHOT=docs/web-page.png writes the screenshot that
docs/serving.md shows, PADDIFF_CONTROL_SCREENSHOT=docs/web-page-control.png docs/controlnet.md's.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from support.processes import free_port, hub_command, stop_process_group

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
TIMEOUT = 300  # generous: the machine may be shared and busy

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI") == "true":
        pytest.fail(
            "chromium/chromedriver are missing in CI: .ci/install-chromium should have installed "
            "them",
            pytrace=False,
        )
    pytest.skip(
        "chromium and chromedriver are not installed (bash .ci/install-chromium)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory):
    """`hub install` into a fresh HUB_HOME, then `hub serving start -m paddiff` (loopback use)."""
    from paddiff.plugins.embedded.train_control import CONTROL_DIR

    home = tmp_path_factory.mktemp("hub-home")
    controlnets = tmp_path_factory.mktemp("controlnets")  # the operator's folder
    (controlnets / "embedded").symlink_to(CONTROL_DIR, target_is_directory=True)
    env = dict(
        os.environ,
        HUB_HOME=str(home),
        PADDIFF_MAX_STEPS="20",
        PADDIFF_MAX_IMAGES="2",
        PADDIFF_CONTROLNET_DIR=str(controlnets),
    )
    for variable in ("PADDIFF_MODEL", "PADDIFF_SAFETY_CONFIG", "PADDIFF_ALLOWED_SCHEDULERS"):
        env.pop(variable, None)
    installed = subprocess.run(
        [*hub_command(), "install", str(ROOT / "hub_module" / "paddiff")],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    port = free_port()
    log = home / "server.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [*hub_command(), "serving", "start", "-m", "paddiff", "-p", str(port)],
            cwd=home,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(base + "/", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield base
    finally:
        stop_process_group(process)  # the page's server is PaddleHub's child: same group


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
        "--lang=zh-CN",
    ):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh,en"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_page_generates_shows_parameters_and_refuses(hub_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    wait = WebDriverWait(browser, TIMEOUT)
    browser.get(hub_server + "/gradio/paddiff")  # PaddleHub redirects to /gradio/paddiff/app
    assert browser.current_url.endswith("/gradio/paddiff/app")
    # The options arrived: the sampler list holds WebUI names.
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sampler option")) > 10)
    samplers = [
        o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#sampler option")
    ]
    assert "DPM++ 2M Karras" in samplers and "Euler a" in samplers
    # Chinese first: the browser asked for zh-CN.
    assert browser.find_element(By.ID, "generate").text == "生成 / Generate"

    # The dice button draws a seed.
    browser.find_element(By.ID, "dice").click()
    assert browser.find_element(By.ID, "seed").get_attribute("value").isdigit()

    prompt = browser.find_element(By.ID, "prompt")
    prompt.send_keys("蓝色背景上的一个红色圆形")
    for field, value in (("steps", "8"), ("seed", "1")):
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    browser.find_element(By.ID, "generate").click()
    image = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "figure.result img")))
    shown = browser.find_element(By.CSS_SELECTOR, "figure.result pre.parameters").text
    assert shown.startswith("蓝色背景上的一个红色圆形")
    assert "Steps: 8" in shown and "Seed: 1" in shown
    # The progress bar ran to its end; the PNG behind the image carries the same parameters.
    bar = browser.find_element(By.ID, "progress")
    assert float(bar.get_attribute("value")) == float(bar.get_attribute("max")) == 8
    png = base64.b64decode(image.get_attribute("src").partition(",")[2])
    picture = Image.open(io.BytesIO(png))
    assert picture.text["parameters"] == shown
    link = browser.find_element(By.CSS_SELECTOR, "figure.result a.download")
    assert link.get_attribute("download") == "paddiff-1.png"

    # A bad setting: the server's own limit, in the server's words.
    steps = browser.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys("500")
    browser.find_element(By.ID, "generate").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "invalid request"))
    message = browser.find_element(By.ID, "message")
    assert message.find_element(By.CLASS_NAME, "explain").text.startswith("设置不符合")
    detail = message.find_element(By.CLASS_NAME, "detail").text
    assert detail == "invalid request: 'steps' must be between 1 and 20, got 500"
    steps.clear()
    steps.send_keys("8")

    # A refused prompt: the refusal, naming the category only.
    prompt.clear()
    prompt.send_keys("a scene full of gore")
    browser.find_element(By.ID, "generate").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "refused"))
    message = browser.find_element(By.ID, "message")
    detail = message.find_element(By.CLASS_NAME, "detail").text
    assert detail == "the prompt was refused by the safety filter (category: violence)"
    assert message.find_element(By.CLASS_NAME, "explain").text.startswith("提示词被安全过滤器拒绝")
    assert "error" in message.get_attribute("class")
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure.result")) == 1

    prompt.clear()
    prompt.send_keys("蓝色背景上的一个红色圆形")
    screenshot = os.environ.get("PADDIFF_SCREENSHOT")
    if screenshot:
        browser.save_screenshot(str(ROOT / screenshot))
    print(f"browser test: {time.monotonic() - started:.1f} s in the browser")


def test_page_inpaints_an_uploaded_image_with_a_drawn_mask(hub_server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT)
    browser.get(hub_server + "/gradio/paddiff/app")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sampler option")) > 10)
    start = tmp_path / "start.png"
    Image.new("RGB", (64, 64), (30, 60, 200)).save(start)
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=inpaint]").click()
    # Without an image or a mask the page says what is missing, before any request.
    browser.find_element(By.ID, "prompt").send_keys("蓝色背景上的一个红色圆形")
    browser.find_element(By.ID, "generate").click()
    assert (
        browser.find_element(By.ID, "message").text
        == "请先上传图片。 / Please upload an image first."
    )
    browser.find_element(By.ID, "image").send_keys(str(start))
    canvas = browser.find_element(By.ID, "mask-canvas")
    wait.until(lambda d: canvas.is_displayed() and canvas.size["width"] > 100)
    ActionChains(browser).move_to_element(canvas).click_and_hold().move_by_offset(
        40, 20
    ).release().perform()
    steps = browser.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys("4")
    browser.find_element(By.ID, "generate").click()
    wait.until(
        lambda d: "Mode: inpaint" in d.find_element(By.CSS_SELECTOR, "figure.result pre").text
    )
    assert browser.find_element(By.ID, "message").text == ""


def test_page_generates_with_a_control_net_and_image(hub_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT)
    browser.get(hub_server + "/gradio/paddiff")  # the first visit starts the page's server
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#control-net-0 option")) > 1)
    area = browser.find_element(By.ID, "control-area")
    assert area.is_displayed() and area.get_attribute("open") is None  # folded, as in A1111
    area.find_element(By.TAG_NAME, "summary").click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "details.control-unit")) == 2  # the limit
    preprocessors = Select(browser.find_element(By.ID, "control-preprocessor-0")).options
    assert preprocessors[0].get_attribute("value") == "none"
    assert "canny" in [o.get_attribute("value") for o in preprocessors]
    silhouette = tmp_path / "silhouette.png"
    disc = Image.new("RGB", (64, 64))
    ImageDraw.Draw(disc).ellipse((6, 32, 30, 56), fill=(255, 255, 255))
    disc.save(silhouette)

    browser.find_element(By.ID, "prompt").send_keys("蓝色背景上的一个红色圆形")
    for field, value in (("steps", "6"), ("seed", "4"), ("control-scale-0", "0.8")):
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    Select(browser.find_element(By.ID, "control-net-0")).select_by_value("embedded")
    # A control model without a control image: the page says so before sending anything.
    browser.find_element(By.ID, "generate").click()
    assert "ControlNet 0 (embedded)" in browser.find_element(By.ID, "message").text
    browser.find_element(By.ID, "control-image-0").send_keys(str(silhouette))
    wait.until(lambda d: d.find_element(By.ID, "control-preview-0").get_attribute("src"))
    browser.find_element(By.ID, "guess-mode").click()
    browser.find_element(By.ID, "generate").click()
    wait.until(
        lambda d: "ControlNet 0" in d.find_element(By.CSS_SELECTOR, "figure.result pre").text
    )
    shown = browser.find_element(By.CSS_SELECTOR, "figure.result pre").text
    assert "Model: embedded [" in shown and "Weight: 0.8" in shown
    assert "Control Mode: ControlNet is more important" in shown
    assert browser.find_element(By.ID, "message").text == ""
    screenshot = os.environ.get("PADDIFF_CONTROL_SCREENSHOT")
    if screenshot:  # the whole form and the result
        browser.set_window_size(1280, 1400)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(ROOT / screenshot))
        browser.set_window_size(1280, 1000)
