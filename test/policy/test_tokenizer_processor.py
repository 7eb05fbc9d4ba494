"""The instruction tokenizer (unseen words) and the preprocessing (resize with pad, statistics)."""

from __future__ import annotations

import numpy as np
import pytest
from policy_helpers import tiny_stats

from retain_ros.errors import ConfigError
from retain_ros.policy.processor_reference import NormalizationStats, resize_with_pad
from retain_ros.policy.tokenizer import BOS_ID, PAD_ID, WordTokenizer


def test_known_words_and_padding():
    tok = WordTokenizer(max_length=8)
    ids, mask = tok.encode("Pick up the RED cube!")
    assert ids[0] == BOS_ID and mask[:6].all() and not mask[6:].any() and (ids[6:] == PAD_ID).all()
    assert ids[4] == tok.word_id("red")


def test_unseen_words_get_stable_distinct_buckets():
    tok = WordTokenizer()
    a, b = tok.word_id("vermilion"), tok.word_id("teal")
    first_bucket = tok.vocab_size - tok.num_buckets
    assert first_bucket <= a < tok.vocab_size and first_bucket <= b < tok.vocab_size
    assert a != b and a == WordTokenizer().word_id("vermilion")


def test_long_instructions_are_truncated():
    ids, mask = WordTokenizer(max_length=4).encode("one two three four five six")
    assert ids.shape == (4,) and mask.all()


def test_tokenizer_round_trip(tmp_path):
    tok = WordTokenizer(num_buckets=5, max_length=7)
    tok.save(tmp_path)
    assert WordTokenizer.load(tmp_path) == tok


def test_tokenizer_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="missing"):
        WordTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("[]")
    with pytest.raises(ConfigError, match="not a valid"):
        WordTokenizer.load(tmp_path)


def test_resize_with_pad_keeps_aspect_and_pads_black():
    image = np.full((10, 40, 3), 200, np.uint8)
    out = resize_with_pad(image, 16, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (out[0] == 0).all() and (out[-1] == 0).all()  # letterbox rows
    assert (out[8] == 200).all()
    same = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    assert resize_with_pad(same, 16, 16) is same


def test_stats_round_trip_exactly(tmp_path):
    stats = NormalizationStats.from_data(np.random.default_rng(0).normal(size=(50, 8)),
                                         np.random.default_rng(1).normal(size=(50, 8)) / 3)
    stats.save(tmp_path)
    loaded = NormalizationStats.load(tmp_path, 8, 8)
    for name in ("state_mean", "state_std", "action_mean", "action_std"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(stats, name))


def test_stats_of_the_wrong_size_are_refused(tmp_path):
    tiny_stats().save(tmp_path)
    with pytest.raises(ConfigError, match=r"needs \(7,\)"):
        NormalizationStats.load(tmp_path, 7, 8)
