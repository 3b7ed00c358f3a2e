"""Each bad input of issue 14 given to the real CLI: exit 2 and exactly one line on stderr naming the thing (no
traceback); SIGTERM during a run: exit 143 and one line. The processes start together, so the suite pays for their
start-up (torch, timm) about once per core."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BOMB = "\n".join(['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
                 + [f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]) + "\n"
SUITES = {
    "duplicate YAML key": ("name: twice\nname: again\narchitectures:\n  - name: lanmsff\n", "duplicate key 'name'"),
    "input_size: 100000": ("name: huge\narchitectures:\n  - name: lanmsff\n    input_size: 100000\n", "too large"),
    "YAML alias bomb": (BOMB, "expands to more than 100,000 YAML values"),
    "suite name of 300 characters": (f"name: {'n' * 300}\narchitectures:\n  - name: lanmsff\n",
                                     "at most 64 characters"),
}
# name -> what its one line must hold
EXPECTED = {"truncated JPEG": "truncated image", "empty JPEG": "empty file",
            "plugin that raises on import": "my plugin is broken on purpose",
            "nonexistent --data path": "does not exist", "newline in --partition": "control characters",
            "a file where the output folder should be": "a file stands where a folder should be",
            **{name: needle for name, (_, needle) in SUITES.items()}}


def damaged_copy(tiny_kdef: Path, root: Path, keep: float) -> tuple[Path, str]:
    """A copy of the dataset with its first JPEG cut to ``keep`` of its bytes; the copy and that file's path."""
    shutil.copytree(tiny_kdef, root)
    image = sorted(root.glob("*/*.JPG"))[0]
    image.write_bytes(image.read_bytes()[: int(image.stat().st_size * keep)])
    return root, image.relative_to(root).as_posix()


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory, tiny_kdef: Path, faults) -> dict[str, tuple[int, str, str]]:
    """Every bad input's command, run at once: name -> (exit status, stderr, a string its line must name)."""
    folder = tmp_path_factory.mktemp("bad-inputs")
    commands: dict[str, tuple[list[str], str]] = {}
    for name, keep in (("truncated JPEG", 0.5), ("empty JPEG", 0.0)):
        data, image = damaged_copy(tiny_kdef, folder / name.split()[0], keep)
        commands[name] = (faults.run_command(folder / name.split()[0], data, "--only", "resnet18")[3:], image)
    plugin = folder / "raises.py"
    plugin.write_text('raise ValueError("my plugin is broken on purpose")\n')
    commands["plugin that raises on import"] = (["--plugin", str(plugin), "list", "architectures"], "raises.py")
    for name, (text, _) in SUITES.items():
        path = folder / f"{name.split()[0].replace(':', '')}.yaml"
        path.write_text(text)
        commands[name] = (["validate", str(path)], path.name)
    commands["nonexistent --data path"] = (faults.run_command(folder, folder / "nowhere")[3:], str(folder / "nowhere"))
    commands["newline in --partition"] = ([*faults.run_command(folder, tiny_kdef)[3:], "--executor", "slurm",
                                           "--partition", "gpu\n#SBATCH --account=x"], "--partition")
    blocker = folder / "blocker"
    blocker.write_text("a file where the output folder should be")
    commands["a file where the output folder should be"] = (
        [*faults.run_command(folder, tiny_kdef)[3:], "--set", f"output={blocker}"], str(blocker))
    assert set(commands) == set(EXPECTED)
    processes = {name: subprocess.Popen([sys.executable, "-m", "fbench", *args], cwd=folder,
                                        env=faults.environment(folder / "cache"), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
                 for name, (args, _) in commands.items()}
    return {name: (process.wait(timeout=300), process.stderr.read(), commands[name][1])  # type: ignore[union-attr]
            for name, process in processes.items()}


@pytest.mark.bad_input
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_bad_input_exits_2_with_one_line(name, answers, faults):
    code, stderr, names = answers[name]
    line = faults.one_line_error((code, stderr))
    assert EXPECTED[name] in line and names in line, line


@pytest.mark.bad_input("SIGTERM during a run")
def test_sigterm_during_a_run_exits_143_with_one_line(tmp_path, tiny_kdef, reference, faults):
    command = faults.run_command(tmp_path, tiny_kdef)
    process = subprocess.Popen(command, cwd=tmp_path, env=faults.environment(reference.cache),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while process.poll() is None and not faults.locks(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before its first cell started"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert "terminated (SIGTERM)" in faults.one_line_error((process.returncode, stderr), status=143)
    assert not faults.locks(tmp_path)
