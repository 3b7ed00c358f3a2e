"""Hostile dataset files (issue 14, item 1): a truncated and an empty JPEG in a KDEF copy are all named before
anything trains, or skipped for real and listed in the terminal, the report and MLflow; a dataset too thin to
split is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fbench.cli import main
from fbench.data.splits import Split
from fbench.data.table import LABEL_INDEX
from fbench.errors import FbenchError
from fbench.registry import get_dataset
from fbench.run.context import check_classes, check_split_classes

SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"


@pytest.fixture
def damaged_kdef(tmp_path: Path, tiny_kdef: Path) -> tuple[Path, str, str]:
    """A copy of ``tiny_kdef`` with one JPEG cut in half and one emptied; their relative paths."""
    root = tmp_path / "kdef"
    shutil.copytree(tiny_kdef, root)
    truncated, empty = sorted(root.glob("*/*.JPG"))[:2]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    empty.write_bytes(b"")
    return root, truncated.relative_to(root).as_posix(), empty.relative_to(root).as_posix()


def test_bad_images_stop_the_run_or_are_skipped_and_listed(tmp_path, damaged_kdef, capsys, monkeypatch):
    root, truncated, empty = damaged_kdef
    monkeypatch.setenv("FBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["run", str(SMOKE), "--budget", "smoke", "--only", "resnet18", "--data", f"kdef={root}", "--device",
            "cpu", "--set", f"output={tmp_path / 'runs'}", "--set", f"reports={tmp_path / 'reports'}",
            "--tracking-uri", uri]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"truncated image ({truncated})" in err and f"empty file ({empty})" in err
    assert "--on-error skip" in err
    assert not (tmp_path / "runs").exists()  # nothing trained

    assert main([*argv, "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    terminal = " ".join((captured.out + captured.err).split())
    assert "2 image file(s)" in terminal and truncated in terminal and empty in terminal
    [report] = (tmp_path / "reports").glob("smoke/*/report.md")
    text = report.read_text()
    assert f"image files left out (--on-error skip): 2: {truncated} (truncated image), {empty} (empty file)" in text
    listing = (report.parent / "skipped-images.txt").read_text().splitlines()
    assert listing == [f"{truncated}\ttruncated image", f"{empty}\tempty file"]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["skipped_images"] == "2"
    assert truncated in parent.data.tags["skipped_image_files"] and empty in parent.data.tags["skipped_image_files"]


def test_one_class_and_thin_splits_are_refused(tiny_kdef):
    tiny_table = get_dataset("kdef").load(tiny_kdef)
    one_class = tiny_table.subset(tiny_table.frame["label"] == LABEL_INDEX["happy"])
    with pytest.raises(FbenchError, match=r"holds 1 class \(happy: \d+ images\).*at least 2"):
        check_classes(one_class)
    ids = tiny_table.frame["sample_id"].tolist()
    happy = tiny_table.frame.loc[tiny_table.frame["label"] == LABEL_INDEX["happy"], "sample_id"].tolist()
    train = [i for i in ids if i not in happy[1:]]  # one happy image left in train
    split = Split("thin", "test", {}, train=tuple(train), val=(), test=tuple(happy[1:]))
    with pytest.raises(FbenchError, match=r"the train part of main split 1/3 holds fewer than 2 images of "
                                          r"class\(es\) happy: 1\. "):
        check_split_classes(tiny_table, split, "main split 1/3")
    split = Split("thin", "test", {}, train=tuple(ids[:-1]), val=(), test=tuple(ids[-1:]))
    with pytest.raises(FbenchError, match=r"the test part of .* holds fewer than 2 images"):
        check_split_classes(tiny_table, split, "main")
