"""Reading training folders: kohya captions, metadata.jsonl, crops, buckets and bad folders."""

from __future__ import annotations

import numpy as np
import pytest
from paddiff.training import batches, data

from support.training_data import draw, imagefolder, kohya_folder


def test_kohya_folder_reads_chinese_captions_beside_images(tmp_path):
    examples = data.read_examples(kohya_folder(tmp_path / "d", count=3))
    assert [e.path.name for e in examples] == ["000.png", "001.png", "002.png"]
    assert examples[1].caption == "一个蓝色的圆"


def test_kohya_repeat_prefix_counts_each_image_n_times(tmp_path):
    kohya_folder(tmp_path / "d" / "3_disc", count=2)
    assert len(data.read_examples(tmp_path / "d")) == 6


def test_metadata_jsonl_is_read_with_its_caption_column(tmp_path):
    examples = data.read_examples(imagefolder(tmp_path / "d"))
    assert [(e.path.name, e.caption) for e in examples[:2]] == [
        ("img0.png", "红色圆"),
        ("img1.png", "蓝色圆"),
    ]
    with pytest.raises(data.DatasetError, match="no 'prompt' caption"):
        data.read_examples(tmp_path / "d", caption_column="prompt")


def test_images_without_captions_are_refused_unless_a_default_caption_is_given(tmp_path):
    folder = kohya_folder(tmp_path / "d", count=3)
    (folder / "001.txt").unlink()
    with pytest.raises(data.DatasetError, match=r"1 of 3 images .* 001\.png.*--caption"):
        data.read_examples(folder)
    examples = data.read_examples(folder, default_caption="圆")
    assert [e.caption for e in examples] == ["一个红色的圆", "圆", "一个绿色的圆"]


def test_empty_missing_and_unreadable_folders_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DatasetError, match="holds no images"):
        data.read_examples(tmp_path / "empty")
    with pytest.raises(data.DatasetError, match="not found"):
        data.read_examples(tmp_path / "absent")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    (tmp_path / "bad" / "x.txt").write_bytes(b"\xff\xfe caption in UTF-16")
    with pytest.raises(data.DatasetError, match="x.txt as UTF-8"):
        data.read_examples(tmp_path / "bad")
    with pytest.raises(data.DatasetError, match="cannot read image .*x.png"):
        data.load_pixels(tmp_path / "bad" / "x.png", (32, 32))


def test_centre_crop_keeps_the_middle_and_scales_to_cover(tmp_path):
    image = draw((255, 0, 0), size=(64, 32))  # wide: the crop cuts the sides
    image.save(tmp_path / "wide.png")
    pixels = data.load_pixels(tmp_path / "wide.png", (16, 16))
    assert pixels.shape == (3, 16, 16) and pixels.min() >= -1 and pixels.max() <= 1
    assert pixels[0, 8, 8] > 0.5  # the red disc is in the middle


def test_buckets_keep_the_area_and_the_aspect_ratio():
    sizes = data.bucket_sizes(64, 16)
    assert (64, 64) in sizes and all(w % 16 == 0 and h % 16 == 0 for w, h in sizes)
    assert all(w * h <= 64 * 64 for w, h in sizes)
    assert data.nearest_bucket((200, 100), sizes)[0] > data.nearest_bucket((200, 100), sizes)[1]
    assert data.nearest_bucket((50, 50), sizes) == (64, 64)


def test_batches_are_full_within_one_bucket_and_fixed_by_the_seed():
    buckets = [(32, 32)] * 5 + [(48, 16)] * 3
    plan = batches.BatchPlan(buckets, global_batch=2, seed=1)
    epoch = plan.epoch(0)
    assert plan.batches_per_epoch() == len(epoch) == 5
    assert all(len(b) == 2 and len({buckets[i] for i in b}) == 1 for b in epoch)
    assert sorted({i for b in epoch for i in b}) == list(range(8))  # every image each epoch
    assert plan.epoch(3) == batches.BatchPlan(buckets, 2, 1).epoch(3)
    assert plan.epoch(0) != plan.epoch(1)
    assert np.array_equal(plan.batch(7), plan.epoch(1)[2])
