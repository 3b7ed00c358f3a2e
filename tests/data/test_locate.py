"""Where datasets live: --data NAME=PATH, the suite, $FBENCH_DATA_<NAME>; errors name the path and its origin."""

from __future__ import annotations

import pytest

from fbench.data.locate import (
    DatasetLocation,
    dataset_root,
    env_var,
    given_location,
    load_dataset,
    parse_data_flags,
    read_location,
)
from fbench.errors import FbenchError


def test_parse_data_flags():
    assert parse_data_flags(["kdef=data/k", "rafdb = /x/raf "]) == {"kdef": "data/k", "rafdb": "/x/raf"}
    with pytest.raises(FbenchError, match="NAME=PATH"):
        parse_data_flags(["kdef"])


def test_env_var_name():
    assert env_var("kdef") == "FBENCH_DATA_KDEF"
    assert env_var("my-set.v2") == "FBENCH_DATA_MY_SET_V2"


def test_order_cli_then_suite_then_environment(tmp_path, monkeypatch, png_adapter):
    for name in ("cli", "suite", "env"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "0_a.png").write_bytes(b"")  # an empty folder is an error
    monkeypatch.setenv("FBENCH_DATA_TEST_PNGS", str(tmp_path / "env"))
    assert dataset_root("test_pngs") == tmp_path / "env"
    assert dataset_root("test_pngs", suite_paths={"test_pngs": str(tmp_path / "suite")}) == tmp_path / "suite"
    assert dataset_root("test_pngs", {"test_pngs": str(tmp_path / "cli")},
                        {"test_pngs": str(tmp_path / "suite")}) == tmp_path / "cli"


def test_missing_location_says_what_to_set(monkeypatch, png_adapter):
    monkeypatch.delenv("FBENCH_DATA_TEST_PNGS", raising=False)
    with pytest.raises(FbenchError, match=r"--data test_pngs=PATH.*FBENCH_DATA_TEST_PNGS=PATH.*PNG files"):
        dataset_root("test_pngs")


def test_path_that_does_not_exist(tmp_path, png_adapter):
    with pytest.raises(FbenchError, match=r"nowhere' \(from --data test_pngs=.*nowhere\) does not exist"):
        dataset_root("test_pngs", {"test_pngs": str(tmp_path / "nowhere")})


def test_load_dataset(tmp_path, png_adapter):
    (tmp_path / "0_a.png").write_bytes(b"")
    table = load_dataset("test_pngs", {"test_pngs": str(tmp_path)})
    assert table.frame["sample_id"].tolist() == ["0_a.png"]


def test_unknown_dataset_suggests():
    with pytest.raises(FbenchError, match="Did you mean 'kdef'"):
        dataset_root("kdf")


def test_each_origin_is_named(tmp_path, monkeypatch, png_adapter):
    monkeypatch.setenv("FBENCH_DATA_TEST_PNGS", str(tmp_path / "env"))
    with pytest.raises(FbenchError, match=r"\(from \$FBENCH_DATA_TEST_PNGS\) does not exist"):
        given_location("test_pngs")
    with pytest.raises(FbenchError, match=r"\(from the suite's data: block \(s\.yaml\)\) does not exist"):
        given_location("test_pngs", None, {"test_pngs": str(tmp_path / "suite")}, "s.yaml")
    with pytest.raises(FbenchError, match=r"the path from the suite's data: block is empty"):
        given_location("test_pngs", None, {"test_pngs": " "})
    monkeypatch.delenv("FBENCH_DATA_TEST_PNGS")
    assert given_location("test_pngs", {}, {}) is None


def test_a_location_without_images_is_an_error(tmp_path, png_adapter):
    (tmp_path / "notes.txt").write_text("no pictures here\n")
    location = DatasetLocation("test_pngs", tmp_path, "--data test_pngs=x")
    with pytest.raises(FbenchError, match=r"\(from --data test_pngs=x\) holds no images the adapter can read"):
        read_location(location)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FbenchError, match=r"empty' \(from --data test_pngs=.*\) is an empty folder"):
        given_location("test_pngs", {"test_pngs": str(tmp_path / "empty")})
