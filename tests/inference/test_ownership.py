"""paddiff.execution owns how networks run: components only declare them, core imports no plugin."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import paddiff
import paddiff.loader
import pytest
from paddiff.execution import ExportCache, InputSpec, Network, networks_of, set_execution
from paddiff.execution.runtimes import get_runtime
from paddle import nn

from support.helpers import ROOT

SD1 = ROOT / "tests" / "fixtures" / "sd" / "sd1"


def _imported_modules(file: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_core_imports_no_plugin_module():
    # built-ins are plugins like any other: core reaches them through entry points only
    offenders = [
        f"{file.relative_to(ROOT)}: {name}"
        for file in sorted((ROOT / "core").rglob("*.py"))
        for name in _imported_modules(file)
        if name == "paddiff.plugins" or name.startswith("paddiff.plugins.")
    ]
    assert offenders == []


def test_no_component_switches_its_own_execution():
    for file in sorted((ROOT / "plugins").rglob("*.py")):
        assert "def use_execution" not in file.read_text(encoding="utf-8"), file


def test_loaded_components_declare_their_networks_and_set_execution_switches_them(tmp_path):
    components = paddiff.loader.load_components(SD1, execution="dynamic")
    names = {key: [n.name for n in networks_of(c)] for key, c in components.items()}
    assert names == {
        "denoiser": ["unet"],
        "vae": ["vae_decoder", "vae_encoder"],
        "text_encoder": ["text_encoder"],
        "scheduler": [],  # no networks: left alone
    }
    set_execution(components, "static", tmp_path)
    modes = {n.name: n.mode for c in components.values() for n in networks_of(c)}
    assert set(modes.values()) == {"static"}
    set_execution(components["vae"], "dynamic")  # one component at a time works too
    assert [n.mode for n in networks_of(components["vae"])] == ["dynamic", "dynamic"]
    assert components["denoiser"].runner.mode == "static"


def test_a_declaration_that_is_not_a_network_is_refused():
    class Odd:
        def networks(self):
            return [nn.Linear(2, 2)]

    with pytest.raises(TypeError, match="must return paddiff.execution.Network"):
        set_execution(Odd(), "dynamic")


def test_a_third_party_component_gets_the_exported_path_by_declaring_a_network(tmp_path):
    class Doubler:
        def __init__(self):
            self.layer = nn.Linear(3, 3)
            self.network = Network("doubler", self.layer, [InputSpec("x", (None, 3))])

        def networks(self):
            return [self.network]

        def __call__(self, x):
            return 2 * self.network(x)

    component = Doubler()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    expected = component(x)
    set_execution({"doubler": component}, "static", cache=ExportCache(tmp_path))
    np.testing.assert_allclose(component(x), expected, atol=1e-5, rtol=0)
    assert [p.parent.name for p in tmp_path.rglob("*.pdiparams")] == ["doubler-Nx3"]


def test_runtime_back_ends_are_looked_up_by_name():
    assert get_runtime().name == "paddle-inference"
    assert ExportCache("/unused").runtime.name == "paddle-inference"
    # (the suite runs with PADDIFF_RUNTIME=paddle-inference: tests/conftest.py)
    with pytest.raises(
        ValueError, match="'onnxruntime' is not a runtime; runtimes: auto, openvino, paddle-inf"
    ):
        get_runtime("onnxruntime")


class _Entry:
    def __init__(self, name, dist, folder):
        self.name, self.dist, self._folder = name, type("Dist", (), {"name": dist}), folder

    def load(self):
        return lambda: self._folder


def test_the_embedded_model_comes_from_the_models_entry_point(tmp_path, monkeypatch):
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    for folder in (theirs, ours):
        folder.mkdir()
        (folder / "model_index.json").write_text("{}")
    entries = [_Entry("embedded", "someone-else", theirs), _Entry("embedded", "paddiff", ours)]
    monkeypatch.setattr(paddiff.loader.metadata, "entry_points", lambda group: entries)
    assert paddiff.loader.embedded_model_path() == ours  # paddiff's own entry wins
    entries[1]._folder = None  # paddiff's model not installed: the other package's serves
    assert paddiff.loader.embedded_model_path() == theirs


def test_the_installed_embedded_entry_point_names_the_shipped_folder():
    from importlib import metadata

    (entry,) = [e for e in metadata.entry_points(group="paddiff.models") if e.name == "embedded"]
    assert entry.value == "paddiff.plugins.embedded:model_folder"
    folder = paddiff.loader.embedded_model_path()
    assert folder is None or (folder / "model_index.json").is_file()


def test_load_pipeline_has_one_home():
    import paddiff.pipeline

    assert paddiff.load_pipeline is paddiff.loader.load_pipeline is paddiff.pipeline.load_pipeline
    assert paddiff.pipeline.EMBEDDED_MODEL_NAME == paddiff.loader.EMBEDDED_MODEL_NAME


def test_a_single_file_text_encoder_without_a_shipped_tokenizer_asks_for_one():
    class NoTokenizer:
        pass

    with pytest.raises(ValueError, match="NoTokenizer ships none; pass tokenizer="):
        paddiff.loader._shipped_tokenizer(NoTokenizer, Path("x.ckpt"), "!", 49408)
