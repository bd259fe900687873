"""One table of scheduler names (paddiff.scheduler_names), read both ways, used everywhere."""

from __future__ import annotations

import pytest
from paddiff import registry
from paddiff.png_info import sampler_label
from paddiff.sampling.sampler import scheduler_class_name
from paddiff.scheduler_names import (
    ALIASES,
    create_scheduler,
    normalize,
    resolve_scheduler_name,
    webui_name,
)
from paddiff.serving import RequestError, ServingLimits, parse_request

from support.scheduler_helpers import SD_CONFIG

BUILT_IN = registry.Registry(third_party=False).names("schedulers")
WEBUI = [
    (n, target, options) for names, target, options in ALIASES for n in names if n != n.lower()
]


def test_no_spelling_selects_two_things():
    seen: dict = {}
    for names, target, options in ALIASES:
        for name in names:
            assert seen.setdefault(normalize(name), (target, options)) == (target, options), name
    assert all(sum(n != n.lower() for n in names) <= 1 for names, _, _ in ALIASES)


@pytest.mark.parametrize("label, target, options", WEBUI, ids=[w[0] for w in WEBUI])
def test_webui_names_round_trip(label, target, options):
    assert resolve_scheduler_name(label, BUILT_IN) == (target, options)
    scheduler = create_scheduler(label, dict(SD_CONFIG))
    # what the pipeline writes into the PNG's Sampler field
    assert sampler_label(scheduler_class_name(scheduler), scheduler.config) == label
    assert webui_name(target, options) == label


def test_schedulers_webui_lacks_keep_their_class_name():
    assert webui_name("PNDMScheduler", {"skip_prk_steps": False}) is None
    assert sampler_label("PNDMScheduler", {"skip_prk_steps": False}) == "PNDMScheduler"
    assert sampler_label("MyScheduler", {"use_karras_sigmas": True}) == "MyScheduler"


def test_server_allow_list_compares_what_names_select():
    limits = ServingLimits(allowed_schedulers=("dpm++2m-karras", "EulerDiscreteScheduler"))
    for name in ("DPM++ 2M Karras", "dpm++_2m_karras", "eulerdiscretescheduler"):
        assert parse_request({"prompt": "cat", "scheduler": name}, limits).arguments["scheduler"]
    for name in ("DPM++ 2M", "euler-karras", "Nope"):
        with pytest.raises(RequestError, match="is not allowed"):
            parse_request({"prompt": "cat", "scheduler": name}, limits)
