"""The report says where the landmarks came from, per pose, and notes perturbation conditions scored where most
landmarks are fallbacks (calibrated or canonical positions, not found on the face)."""

from __future__ import annotations

from pathlib import Path

from test_report import make_data

from fbench.report.document import write_report


def leaderboard_part(tmp_path: Path, **overrides) -> tuple[str, str]:
    md = write_report(tmp_path, make_data(**overrides))["markdown"].read_text()
    return md.split("## Leaderboard")[0], md.split("## Leaderboard")[1].split("\n## ")[0]


def test_profiles_placed_by_pose_carry_a_note(tmp_path: Path) -> None:
    sources = {"FL": {"calibrated": 140}, "HL": {"model": 20, "calibrated": 120}, "S": {"calibrated": 140},
               "HR": {"calibrated": 140}, "FR": {"calibrated": 140}}
    facts, board = leaderboard_part(tmp_path / "fallbacks", landmark_sources=sources)
    assert "Landmarks by pose" in facts and "FL: calibrated 140; HL: model 20, calibrated 120;" in facts
    assert "Landmark fallbacks: 97% of the faces" in board and "occlusion" in board.split("Landmark fallbacks")[1]


def test_model_landmarks_carry_no_note(tmp_path: Path) -> None:
    sources = {"FL": {"calibrated": 140}, "HL": {"model": 140}, "S": {"model": 140}, "HR": {"model": 140},
               "FR": {"calibrated": 140}}
    facts, board = leaderboard_part(tmp_path / "model", landmark_sources=sources)
    assert "S: model 140" in facts and "Landmark fallbacks" not in board
    facts, board = leaderboard_part(tmp_path / "unknown")
    assert "Landmarks by pose" not in facts and "Landmark fallbacks" not in board
