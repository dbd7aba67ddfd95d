"""The cache folder: the decode cache keeps under its cap, least recently used entries going first,
and `keras-cnn-cache info|clean` shows and empties it."""

import os

import numpy as np
import pytest

from keras_cnn import cache
from keras_cnn.cli import cache as cache_cli
from keras_cnn.config import DataConfig
from keras_cnn.data import store
from keras_cnn.data.sources import load_image_folder


@pytest.fixture
def subsets(cifar_folder):
    """Three disjoint 40-image splits of the real CIFAR JPEG fixture (~123 KB each decoded)."""
    split = load_image_folder(str(cifar_folder)).train
    return [split.take(np.arange(i * 40, (i + 1) * 40)) for i in range(3)]


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _keys(cache_folder):
    return {key for _, _, key in cache.entries(str(cache_folder / "decoded"))}


def test_the_decode_cache_evicts_the_least_recently_used_entry_to_stay_under_its_cap(
    subsets, cache_folder, monkeypatch
):
    monkeypatch.setenv(cache.LIMIT_ENV, "300KB")
    a, b, c = subsets
    store.place(a, DataConfig(cache="memory"))
    store.place(b, DataConfig(cache="memory"))
    assert _keys(cache_folder) == {store.cache_key(a), store.cache_key(b)}
    store.place(a, DataConfig(cache="memory"))  # a hit: a is now the most recently used
    store.place(c, DataConfig(cache="memory"))
    assert _keys(cache_folder) == {store.cache_key(a), store.cache_key(c)}
    assert sum(size for _, size, _ in cache.entries(str(cache_folder / "decoded"))) <= 300_000


def test_a_memory_split_over_the_cap_is_not_cached_and_a_disk_split_stays_while_used(
    subsets, cache_folder, monkeypatch
):
    monkeypatch.setenv(cache.LIMIT_ENV, "50KB")
    a, b, _ = subsets
    memory = store.place(a, DataConfig(cache="memory"))
    assert _keys(cache_folder) == set() and len(memory) == 40
    disk = store.place(b, DataConfig(cache="disk"))  # a disk split needs its file, cap or not
    assert _keys(cache_folder) == {store.cache_key(b)}
    np.testing.assert_array_equal(disk.sample(40), store.place(b, DataConfig(cache="memory")).images)


def test_a_bad_cap_is_one_line_naming_the_variable(subsets, cache_folder, monkeypatch, capsys):
    monkeypatch.setenv(cache.LIMIT_ENV, "lots")
    assert cache_cli.main(["info"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: KERAS_CNN_CACHE_MAX 'lots' is not a size; write e.g. 4GB, 512MB or 1.5GiB"
    )


def test_cache_info_shows_each_part_and_clean_empties_it(subsets, cache_folder, capsys):
    store.place(subsets[0], DataConfig(cache="memory"))
    (cache_folder / "crashes").mkdir()
    (cache_folder / "crashes" / "crash-1.log").write_text("Traceback ...")
    assert cache_cli.main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cache folder: {cache_folder}"
    decoded = next(line for line in lines if line.strip().startswith("decoded/"))
    assert "2 files, 1 entries, cap 5.0 GB" in decoded and "KB" in decoded, decoded
    assert any(line.split()[:3] == ["crashes/", "13", "B"] for line in lines), lines

    assert cache_cli.main(["clean", "--only", "decoded"]) == 0
    assert "removed 123" in capsys.readouterr().out
    assert _keys(cache_folder) == set() and (cache_folder / "crashes" / "crash-1.log").exists()
    assert cache_cli.main(["clean"]) == 0
    assert not any(os.path.exists(cache_folder / kind) for kind in cache.KINDS)
