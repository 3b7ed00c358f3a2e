"""The ``fbench`` command: parses arguments, calls the Python API, prints. No logic of its own.

Bad input (an ``FbenchError``) prints one message and exits with status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fbench
from fbench.engine.checkpoint import wait_for_writes
from fbench.errors import FbenchError

EXIT_BAD_INPUT = 2
EXIT_TERMINATED = 128 + 15  # SIGTERM, as a shell reports a process it ends
PARTIAL_HELP = ("rank architectures with missing, failed or corrupt cells against complete ones (default: they are "
                "shown, marked incomplete, but not ranked)")


def _common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--plugin", action="append", default=default, metavar="MODULE",
                        help="import a plugin module that registers architectures (repeatable)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fbench", description="Benchmark and ablate facial expression recognition architectures."
    )
    parser.add_argument("--version", action="version", version=f"fbench {fbench.__version__}")
    _common_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    listing = commands.add_parser("list", help="list registered architectures")
    _common_options(listing, suppress=True)
    listing.add_argument("subject", nargs="?", default="architectures", choices=["architectures"],
                         help="what to list (default: architectures)")
    listing.add_argument("pattern", nargs="?", help="a glob on names, e.g. 'timm/resnet*'")
    listing.add_argument("--all", action="store_true", help="expand families: every timm model")
    listing.add_argument("--variants", action="store_true", help="show each architecture's variant options")
    listing.add_argument("--json", action="store_true", help="print JSON")

    profile = commands.add_parser("profile", help="parameters, MACs, latency and throughput of an architecture")
    _common_options(profile, suppress=True)
    profile.add_argument("architecture", help="a registered name, e.g. lanmsff, scan_cci, timm/resnet18")
    profile.add_argument("--variant", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                         help="variant options, e.g. --variant shared_heads=true")
    profile.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="override the input size")
    profile.add_argument("--num-classes", type=int, help="label count (default: the architecture's)")
    profile.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    profile.add_argument("--batch-size", type=int, help="batch size for throughput (default 64 on CUDA, else 8)")
    profile.add_argument("--warmup", type=int, default=3, help="warm-up passes before timing")
    profile.add_argument("--repeats", type=int, default=20, help="timed passes (median reported)")
    profile.add_argument("--no-speed", action="store_true", help="count only; skip latency and throughput")
    profile.add_argument("--json", action="store_true", help="print one JSON object")
    _data_parser(commands)
    _suite_parsers(commands)
    _tune_parser(commands)
    return parser


def _suite_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="a suite file (e.g. suites/multiview.yaml) or a built-in suite's name "
                                      "(e.g. multiview)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a suite key, e.g. --set seeds=[0] --set architectures.0.recipe.epochs=5")
    parser.add_argument("--budget", help="smoke, quick, paper (or a budget the suite defines)")
    parser.add_argument("--only", action="append", default=[], metavar="ARCH",
                        help="run only this architecture (name or label; repeatable)")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                        help="where a dataset lives (else the suite's data: block or $FBENCH_DATA_<NAME>)")
    parser.add_argument("--params", action="append", default=[], type=Path, metavar="BEST_YAML",
                        help="apply tuned parameters written by `fbench tune` (its best.yaml) to their "
                             "architecture (repeatable)")


def _tune_parser(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser("tune", help="Optuna search over an architecture's recipe and variants, scored on "
                                            "validation data only; writes best.yaml for `fbench run --params`")
    _common_options(tune, suppress=True)
    tune.add_argument("suite", help="a suite file (e.g. suites/multiview.yaml) or a built-in suite's name")
    tune.add_argument("--arch", required=True, metavar="NAME",
                      help="the architecture to tune: a name or label of the suite, e.g. lanmsff")
    tune.add_argument("--trials", type=int, default=20, metavar="N",
                      help="trials this invocation adds to the study (default 20); with --workers W, the total "
                           "split between the workers (N // W each, one more for the first N %% W)")
    tune.add_argument("--timeout", type=float, metavar="S",
                      help="stop adding trials after S seconds (each worker's own clock with --workers)")
    tune.add_argument("--storage", default="sqlite:///optuna.db",
                      help="Optuna storage: sqlite:///optuna.db (default), postgresql://..., mysql://..., or a "
                           "journal file (journal:PATH, or PATH ending in .log/.journal) for processes on one "
                           "machine or, on a shared filesystem, for SLURM workers; the same storage and study name "
                           "resume and share the study")
    tune.add_argument("--study-name", help="default: <suite>-<arch>-<objectives>")
    tune.add_argument("--sampler", choices=["tpe", "random", "cmaes", "nsga2"],
                      help="default: tpe (nsga2 for several objectives)")
    tune.add_argument("--pruner", choices=["median", "hyperband", "none"], default="median",
                      help="stop weak trials early from their per-epoch validation score (default: median)")
    tune.add_argument("--objective", default="val_accuracy",
                      help="val_accuracy (default), val_loss, or several for a Pareto front, e.g. "
                           "val_accuracy,macs (also params, latency)")
    tune.add_argument("--fold", type=int, default=0, help="the main protocol's fold to tune on (default 0)")
    tune.add_argument("--budget", help="budget of each trial (default: tune, which the suite may redefine under "
                                       "budgets:)")
    tune.add_argument("--seed", type=int, help="sampler seed (default: random, so parallel processes differ)")
    tune.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a suite key, e.g. --set protocol.val_fraction=0.2")
    tune.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                      help="where a dataset lives (else the suite's data: block or $FBENCH_DATA_<NAME>)")
    tune.add_argument("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    tune.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    tune.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db here)")
    tune.add_argument("--out", type=Path, metavar="DIR",
                      help="folder for best.yaml, plots and report (default tune/<study name>/)")
    tune.add_argument("--no-report", action="store_true", help="write best.yaml only: no plots or report")
    tune.add_argument("--executor", default="local", choices=["local", "slurm", "local-jobs", "debug"],
                      help="where trials run: local (default, in this process), slurm (--workers jobs of a SLURM "
                           "array), local-jobs (--workers local processes, a GPU each when there are GPUs), debug "
                           "(the workers one after another in this process)")
    tune.add_argument("--workers", type=int, default=1, metavar="W",
                      help="workers filling the study at once with --executor slurm/local-jobs/debug (default 1); "
                           "they share --storage, which must be one every job can reach (not SQLite on SLURM)")
    _cluster_options(tune, unit="worker")


def _suite_parsers(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="train and evaluate every cell of a suite; leaderboard and report")
    _common_options(run, suppress=True)
    _suite_options(run)
    run.add_argument("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db here)")
    run.add_argument("--executor", default="local",
                     help="how cells run: local (default, one after another in this process), slurm (a SLURM job "
                          "array), local-jobs (jobs as local processes), debug (jobs in this process)")
    _cluster_options(run)
    run.add_argument("--retry-failed", action="store_true", help="run again the cells that failed before")
    run.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                     help="image files that are missing or do not decode (every file is decode-checked before "
                          "training): stop naming them all (default) or skip them, listed in the report")
    run.add_argument("--no-report", action="store_true", help="skip the Markdown/HTML report")
    run.add_argument("--partial", action="store_true", help=PARTIAL_HELP)

    validate = commands.add_parser("validate", help="check suite files without running them")
    _common_options(validate, suppress=True)
    validate.add_argument("suites", nargs="+", help="suite files or built-in suites' names")

    for name, text in (("leaderboard", "print a suite's leaderboard from stored results (trains nothing)"),
                       ("rescore", "recompute every metric of a suite from stored predictions")):
        action = commands.add_parser(name, help=text)
        _common_options(action, suppress=True)
        _suite_options(action)
        if name == "rescore":
            action.add_argument("--no-report", action="store_true", help="skip the report")
        else:  # the choices are fbench.report.formats.FORMATS
            action.add_argument("--format", default="table", choices=["table", "markdown", "csv", "json", "latex"],
                                help="table (default, the terminal's), markdown (the report's table), csv or json "
                                     "(one row per architecture and view, plain numbers), latex (booktabs)")
        action.add_argument("--partial", action="store_true", help=PARTIAL_HELP)

    status = commands.add_parser("status", help="where each cell of a suite stands: pending, running, finished, "
                                                "failed; job ids, logs, and the log tail of failed jobs")
    _common_options(status, suppress=True)
    _suite_options(status)
    status.add_argument("--json", action="store_true", help="print JSON")

    ui = commands.add_parser("ui", help="the MLflow UI on 127.0.0.1")
    _common_options(ui, suppress=True)
    ui.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db here)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--experiment", help="the experiment whose leaderboard to open (default: the latest suite run's)")


def _cluster_options(run: argparse.ArgumentParser, unit: str = "cell") -> None:
    """Resources of each job (one per cell, or per tuning worker); each overrides the same key of the suite's
    resources: block."""
    group = run.add_argument_group("cluster jobs (--executor slurm, local-jobs, debug)")
    group.add_argument("--partition", help="SLURM partition")
    if unit == "cell":
        group.add_argument("--gpus-per-cell", type=int, metavar="N",
                           help="GPUs per cell (default 1 on SLURM; with local-jobs, one of this machine's GPUs per "
                                "job); above 1 the cell runs under torchrun")
        group.add_argument("--processes-per-cell", type=int, metavar="N",
                           help="torchrun processes per cell (default: --gpus-per-cell when above 1; gloo on CPUs)")
    else:
        group.add_argument("--gpus-per-cell", type=int, metavar="N",
                           help="GPUs per worker job (default 1 on SLURM; with local-jobs, one of this machine's "
                                "GPUs per worker); a worker trains one trial at a time on its first GPU")
    group.add_argument("--cpus-per-cell", type=int, metavar="N", help=f"CPU cores per {unit} (default 8 on SLURM)")
    group.add_argument("--mem-gb", type=float, metavar="GB", help=f"memory per {unit}")
    group.add_argument("--time-min", type=int, metavar="MIN",
                       help=f"time limit per {unit} job (default 240 on SLURM); a job stopped at its limit is "
                            f"requeued" + (" and resumes its share of the trials" if unit == "worker" else ""))
    group.add_argument("--max-parallel", type=int, metavar="N",
                       help="cells running at once (SLURM array parallelism; default 32 on SLURM, 1 for local-jobs)"
                       if unit == "cell" else "workers running at once (default: all of --workers)")
    group.add_argument("--slurm-setup", action="append", default=[], metavar="LINE",
                       help="a shell line run before each job, e.g. 'module load cuda/12.4' (repeatable)")
    group.add_argument("--slurm-param", action="append", default=[], metavar="KEY=VALUE",
                       help="another sbatch option, e.g. account=proj1, qos=high (repeatable)")
    group.add_argument("--no-wait", action="store_true",
                       help="submit and return (SLURM); `fbench status` follows, `fbench leaderboard` ranks"
                       if unit == "cell" else "submit and return (SLURM); the last worker to finish writes "
                                              "best.yaml")


def _cluster_resources(args: argparse.Namespace) -> dict[str, Any]:
    resources: dict[str, Any] = {key: getattr(args, key, None) for key in (
        "partition", "gpus_per_cell", "processes_per_cell", "cpus_per_cell", "mem_gb", "time_min", "max_parallel")}
    for key in ("gpus_per_cell", "processes_per_cell", "cpus_per_cell", "time_min", "max_parallel"):
        if resources[key] is not None and resources[key] < (0 if key == "gpus_per_cell" else 1):
            raise FbenchError(f"--{key.replace('_', '-')} must be at least {0 if key == 'gpus_per_cell' else 1}")
    _refuse_control_characters(args)
    if args.slurm_setup:
        resources["setup"] = list(args.slurm_setup)
    if args.slurm_param:
        from fbench.suite.load import parse_override

        params = {}
        for key, value in parse_key_values(args.slurm_param, "--slurm-param").items():
            params[key] = parse_override(f"x={value}")[1]  # YAML scalars: numbers, true/false
        resources["slurm_params"] = params
    return {key: value for key, value in resources.items() if value is not None}


def _refuse_control_characters(args: argparse.Namespace) -> None:
    """A newline in a SLURM value would add a line to the job script: refused before anything runs (and before
    YAML reads a --slurm-param value, which would fold a newline into a space)."""
    from fbench.suite.schema import control_character_problem

    given = [("--partition", args.partition)] if args.partition else []
    given += [("--slurm-setup", line) for line in args.slurm_setup or []]
    given += [("--slurm-param", item) for item in args.slurm_param or []]
    for flag, text in given:
        problem = control_character_problem(text, flag)
        if problem:
            raise FbenchError(f"{problem} (got {text!r})")


def _data_parser(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="build the synthetic set, describe and preview datasets")
    _common_options(data, suppress=True)
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = actions.add_parser("synth", help="render the synthetic multi-view expression set (KDEF layout)")
    _common_options(synth, suppress=True)
    synth.add_argument("--out", required=True, type=Path, help="output folder, e.g. data/synth-kdef")
    synth.add_argument("--identities", type=int, default=70, help="identities, half female (default 70)")
    synth.add_argument("--sessions", type=int, default=2, choices=[1, 2], help="sessions A and B (default 2)")
    synth.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=(320, 256),
                       help="image height and width (default 320 256)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, help="processes (default: all cores)")
    synth.add_argument("--overwrite", action="store_true", help="replace an earlier synthetic set in --out")

    for name, text in (("info", "what a dataset holds"), ("preview", "a grid of faces, optionally perturbed"),
                       ("prepare", "build a dataset's decode cache (crops, resized) ahead of a run")):
        action = actions.add_parser(name, help=text)
        _common_options(action, suppress=True)
        action.add_argument("dataset", help="a registered dataset: kdef, rafdb, fer2013, ferplus, affectnet, "
                                            "imagefolder, csv")
        action.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                            help="where a dataset lives (else $FBENCH_DATA_<NAME>)")
        action.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                            help="bad files (every image is decode-checked): stop naming them all (default) or "
                                 "skip them and list them")
        if name == "info":
            action.add_argument("--json", action="store_true", help="print JSON")
        elif name == "preview":
            action.add_argument("--out", type=Path, required=True, help="PNG file to write")
            action.add_argument("--perturb", metavar="CONDITION",
                                help="e.g. occlusion:severity=0.3, occlusion:kind=eye_band, mask:kind=surgical")
            action.add_argument("--count", type=int, default=35, help="faces in the grid (default 35)")
            action.add_argument("--columns", type=int, help="grid columns (default: one per pose)")
            action.add_argument("--size", type=int, default=128, help="tile side in pixels (default 128)")
            action.add_argument("--seed", type=int, default=0)
            action.add_argument("--landmarks", action="store_true",
                                help="draw the six landmarks the perturbation used (boxed by their uncertainty where "
                                     "calibrated), and their source, on each face")
        else:
            action.add_argument("--input-size", type=int, required=True, metavar="N",
                                help="side of the square model input, e.g. 64 or 224")
            action.add_argument("--channels", type=int, choices=[1, 3], default=3,
                                help="1 (grayscale) or 3 (default)")
            action.add_argument("--crop", choices=["haar", "box", "none"],
                                help="face crop (default: the dataset's: recorded boxes where it has them, else haar)")
            action.add_argument("--workers", type=int, help="parallel decoders (default: every core)")


def parse_key_values(items: Sequence[str], flag: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FbenchError(f"{flag} expects KEY=VALUE, got {item!r} (e.g. {flag} shared_heads=true)")
        values[key.strip()] = value.strip()
    return values


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def run_list(args: argparse.Namespace) -> int:
    from fbench.registry import ARCHITECTURES

    rows: list[dict[str, Any]] = []
    for name in ARCHITECTURES.names():
        if args.pattern and not fnmatch.fnmatch(name, args.pattern):
            continue
        rows.append(_architecture_row(name))
    for prefix, family in ARCHITECTURES.families().items():
        family_pattern = None
        if args.pattern:
            head, sep, rest = args.pattern.partition("/")
            family_pattern = rest if sep and head == prefix else args.pattern
        members = []
        if args.all or family_pattern:
            members = [m for m in family.members() if not args.pattern or fnmatch.fnmatch(m, args.pattern)]
            rows.extend({"name": m, "source": f"family {prefix}"} for m in members)
        elif not args.pattern:
            count = len(family.members())
            rows.append({
                "name": f"{prefix}/<model>", "source": "family", "description":
                f"{family.description}; {count} models: `fbench list architectures --all` or a pattern "
                f"such as '{prefix}/resnet*'",
            })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    columns = ("name", "input", "source", "description") + (("variants",) if args.variants else ())
    table = Table(title="fbench architectures")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        variants = str(row.get("variants", "")).replace("; ", "\n")
        table.add_row(*(variants if c == "variants" else str(row.get(c, "")) for c in columns))
    _console().print(table)
    if not args.variants:
        _console().print("Variant options: `fbench list architectures --variants`.")
    return 0


def _architecture_row(name: str) -> dict[str, Any]:
    from fbench.registry import ARCHITECTURES

    source = ARCHITECTURES.source_of(name)
    try:
        architecture = ARCHITECTURES.get(name)
    except FbenchError as error:  # a broken plugin is listed as such; the other architectures stay usable
        return {"name": name, "source": source, "input": "broken", "broken": True,
                "description": f"broken: {error}"}
    return {
        "name": name,
        "source": source,
        "input": "x".join(map(str, architecture.spec.input_size)),
        "variants": "; ".join(option.describe() for option in architecture.options),
        "description": architecture.description,
    }


def run_profile(args: argparse.Namespace) -> int:
    from fbench.profile import profile_architecture

    result = profile_architecture(
        args.architecture,
        parse_key_values(args.variant, "--variant"),
        num_classes=args.num_classes,
        input_size=tuple(args.input_size) if args.input_size else None,
        device=args.device,
        batch_size=args.batch_size,
        speed=not args.no_speed,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    _print_profile(result)
    return 0


def _print_profile(result: Any) -> None:
    from rich.table import Table

    from fbench.profile import summarise_calls, summarise_macs

    table = Table(title=f"{result.architecture}  ({'x'.join(map(str, result.input_size))}, "
                        f"{result.num_classes} classes)", show_header=False)
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    table.add_row("variant options", ", ".join(f"{k}={v}" for k, v in result.options.items()) or "none")
    table.add_row("parameters", f"{result.params:,} ({result.trainable_params:,} trainable)")
    table.add_row("buffers", f"{result.buffers:,} elements")
    table.add_row("MACs (fvcore)", f"{result.macs:,} ({result.macs / 1e9:.3f} G)")
    flag = "  [bold red]DISAGREE > 2%[/]" if result.macs_disagree else ""
    table.add_row("MACs (torch flop counter)", f"{result.macs_torch:,} ({result.macs_disagreement:.2%} apart){flag}")
    table.add_row("MACs by operator", summarise_macs(result.macs_by_operator))
    table.add_row("not counted (no MACs), calls", summarise_calls(result.not_counted_operators) or "none")
    if result.unrecognised_operators:
        table.add_row("[bold red]unrecognised operators[/]",
                      ", ".join(result.unrecognised_operators) + " (may hide MACs)")
    if result.latency_ms is not None:
        table.add_row(f"latency, batch 1 ({result.device})",
                      f"{result.latency_ms:.2f} ms (median of {result.latency_repeats})")
        table.add_row(f"throughput, batch {result.throughput_batch_size}",
                      f"{result.throughput:,.1f} images/s (median of {result.throughput_repeats})")
    _console().print(table)


def run_data(args: argparse.Namespace) -> int:
    if args.data_command == "synth":
        return _run_synth(args)
    from fbench.data.locate import load_dataset, parse_data_flags

    table = load_dataset(args.dataset, parse_data_flags(args.data), on_error=args.on_error)
    if table.report.total:
        print(f"fbench: skipped {table.report.total} samples of {args.dataset}: {table.report.summary()}",
              file=sys.stderr)
    if args.data_command == "prepare":
        return _run_prepare(args, table)
    if args.data_command == "info":
        from fbench.data.summary import summarize

        summary = summarize(table)
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            _print_summary(summary)
        return 0
    from fbench.data.preview import preview_grid

    out = preview_grid(table, args.out, condition=args.perturb, count=args.count, columns=args.columns,
                       tile=args.size, seed=args.seed, landmarks=args.landmarks)
    _console().print(f"wrote {out}")
    return 0


def _run_prepare(args: argparse.Namespace, table: Any) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from fbench.data.boxes import detection_text
    from fbench.data.cache import build_cache
    from fbench.data.placement import sources_text

    if args.input_size < 1 or (args.workers is not None and args.workers < 1):
        raise FbenchError("--input-size and --workers take a positive number, e.g. --input-size 64 --workers 2")
    size = (args.channels, args.input_size, args.input_size)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=_console(), transient=True, disable=not sys.stdout.isatty()) as progress:
        task = progress.add_task(f"preparing {table.dataset}", total=len(table), rate="")

        def advance(done: int, total: int) -> None:
            elapsed = progress.tasks[0].elapsed or 0.0
            rate = f"{done / elapsed:,.1f} images/s" if done and elapsed > 0 else ""
            progress.update(task, completed=done, total=total, rate=rate)

        cached = build_cache(table, size, crop=args.crop, workers=args.workers, progress=advance,
                             note=lambda text: progress.console.print(f"fbench: {text}"))
    meta = cached.meta
    seconds = float(meta.get("build_seconds") or 0.0)
    rate = f"{len(cached) / seconds:,.1f} images/s" if seconds > 0 else "? images/s"
    what = f"{table.dataset}{' (SYNTHETIC)' if table.synthetic else ''} at {'x'.join(map(str, size))}, " \
           f"crop {meta['crop']}"
    if cached.hit:
        print(f"{what}: already prepared ({len(cached):,} images; built in {seconds:.1f} s, {rate})")
    else:
        print(f"prepared {what}: {len(cached):,} images in {seconds:.1f} s, {rate}")
    counts = meta.get("detections") or {}
    boxes = f" (face boxes {'reused from' if meta.get('boxes_reused') else 'kept in'} {meta['boxes']})" \
        if meta.get("boxes") else ""
    print(f"face crops: {detection_text(counts) if counts else 'not recorded (built by an older fbench)'}{boxes}")
    print(f"cache: {cached.path}")
    if meta.get("landmark_sources"):
        model = meta.get("landmark_model") or ("none" if meta["crop"] == "haar" else "not used")
        print(f"landmarks (model {model}): {sources_text(meta['landmark_sources'])}")
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from fbench.data.synth.build import SynthConfig, build_synthetic_kdef

    config = SynthConfig(identities=args.identities, sessions=args.sessions, image_size=tuple(args.size),
                         seed=args.seed)
    with Progress(console=_console(), transient=True) as progress:
        task = progress.add_task("rendering synthetic faces", total=None)
        manifest = build_synthetic_kdef(
            args.out, config, workers=args.workers, overwrite=args.overwrite,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    _console().print(f"wrote {len(manifest)} synthetic images (KDEF layout) to {args.out}; "
                     f"use it with --data kdef={args.out}")
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    title = f"{summary['dataset']} at {summary['root']}"
    if summary["synthetic"]:
        title += "  [bold yellow]SYNTHETIC (procedurally rendered, not real faces)[/]"
    table = Table(title=title, show_header=False)
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    table.add_row("images", f"{summary['images']:,}")
    table.add_row(f"classes ({len(summary['classes'])})",
                  ", ".join(f"{name} {n:,}" for name, n in summary["classes"].items()))
    table.add_row("subjects", str(summary["subjects"]))
    for key in ("poses", "splits", "conditions", "skipped"):
        if summary[key]:
            table.add_row(f"{key} ({len(summary[key])})" if key == "poses" else key,
                          ", ".join(f"{name} {n:,}" for name, n in summary[key].items()))
    if summary.get("sessions"):
        table.add_row("sessions", ", ".join(summary["sessions"]))
    for note in summary.get("notes", []):
        table.add_row("note", note)
    if summary.get("bad_files"):
        table.add_row(f"bad files ({len(summary['bad_files'])}, left out)",
                      "\n".join(f"{path}: {reason}" for path, reason in summary["bad_files"].items()))
    table.add_row("landmarks", "yes" if summary["landmarks"] else "no (placed by a model or calibrated positions)")
    if summary.get("landmark_model") or summary.get("landmark_model_missing"):
        table.add_row("landmark model", summary.get("landmark_model") or f"none: {summary['landmark_model_missing']}; "
                      "calibrated per-pose positions are used")
    if "landmark_sources" in summary:
        from fbench.data.placement import sources_text

        sources = summary["landmark_sources"]
        table.add_row("landmark sources", sources_text(sources).replace("; ", "\n") if sources else
                      f"not placed yet: fbench data prepare {summary['dataset']} --input-size N places them")
    if "crop" in summary:
        from fbench.data.boxes import detection_text

        counts = summary.get("detections")
        table.add_row(f"face crops ({summary['crop']})", detection_text(counts) if counts else
                      f"not detected yet: fbench data prepare {summary['dataset']} --input-size N counts them")
    _console().print(table)


def _load_suite(args: argparse.Namespace):
    from fbench.data.locate import parse_data_flags
    from fbench.suite.load import load_suite

    return load_suite(args.suite, args.overrides, budget=args.budget, only=args.only or None,
                      data=parse_data_flags(args.data), params=getattr(args, "params", []))


def run_suite_command(args: argparse.Namespace) -> int:
    from fbench.pipeline import run_efficiency, run_suite
    from fbench.progress import print_efficiency, run_progress
    from fbench.run.context import RunOptions

    suite = _load_suite(args)
    options = RunOptions(budget=args.budget, device=args.device, tracking=False if args.no_tracking else None,
                         tracking_uri=args.tracking_uri, executor=args.executor, retry_failed=args.retry_failed,
                         on_error=args.on_error, write_report=not args.no_report,
                         resources=_cluster_resources(args), wait=not args.no_wait, plugins=list(args.plugin or []),
                         partial=args.partial)
    with run_progress(_console()) as progress:
        if suite.efficiency_only:
            efficiency = run_efficiency(suite, options, progress)
            print_efficiency(_console(), efficiency)
            return 0
        run = run_suite(suite, options, progress)
    _print_run(run)
    return 0


def _print_run(run: Any) -> None:
    from fbench.progress import print_leaderboards

    print_leaderboards(_console(), run)
    if run.report:
        _console().print(f"report: {run.report.get('html')}  (and report.md beside it)")


def run_validate(args: argparse.Namespace) -> int:
    from fbench.suite.load import validate_suite_file

    bad = 0
    for path in args.suites:
        problems = validate_suite_file(path)
        if problems:
            bad += 1
            for problem in problems:
                print(problem, file=sys.stderr)
        else:
            _console().print(f"{path}: valid")
    return EXIT_BAD_INPUT if bad else 0


def run_stored(args: argparse.Namespace) -> int:
    """leaderboard and rescore: everything from the cells' stored predictions; nothing is trained."""
    from fbench.pipeline import rescore_suite
    from fbench.run.context import Progress, RunOptions

    suite = _load_suite(args)
    options = RunOptions(budget=args.budget, tracking=False,
                         write_report=args.command == "rescore" and not args.no_report, partial=args.partial)
    fmt = getattr(args, "format", "table")
    notes = _console() if fmt == "table" else _console(stderr=True)  # stdout keeps only the format's text
    run = rescore_suite(suite, options, rewrite_metrics=args.command == "rescore",
                        progress=Progress(note=lambda text: notes.print(text, markup=False, soft_wrap=fmt != "table")))
    if fmt == "table":
        _print_run(run)
        return 0
    from fbench.report.formats import format_leaderboard
    from fbench.report.suite import suite_report_data

    sys.stdout.write(format_leaderboard(suite_report_data(run, "stored results"), fmt))
    return 0


def run_status(args: argparse.Namespace) -> int:
    from fbench.run.context import Progress, RunOptions
    from fbench.run.cross import prepare_suite
    from fbench.run.status import suite_status

    suite = _load_suite(args)
    notes: list[str] = []
    prepared = prepare_suite(suite, RunOptions(budget=args.budget, tracking=False), Progress(note=notes.append),
                       planning="stored")
    rows = suite_status(Path(suite.output), prepared.cells)
    if prepared.choice.synthetic:
        # stderr under --json, so that the JSON stays parseable
        print(_synthetic_line(prepared.choice), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps([{**row.__dict__, "folder": str(row.folder)} for row in rows], indent=2))
        return 0
    from rich.table import Table

    counts = {state: sum(row.state == state for row in rows) for state in ("pending", "running", "finished", "failed")}
    table = Table(title=f"{suite.name}: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    for column in ("cell", "state", "job", "log / reason"):
        table.add_column(column, overflow="fold")
    colours = {"finished": "green", "failed": "bold red", "running": "cyan", "pending": "yellow"}
    for row in rows:
        detail = row.reason if row.state == "failed" else row.log
        job = f"{row.job_id} ({row.scheduler})" if row.scheduler else row.job_id or "-"
        table.add_row(row.name, f"[{colours[row.state]}]{row.state}[/]", job, detail or str(row.folder))
    console = _console()
    console.print(table)
    for row in rows:
        if row.state == "failed" and row.log_tail:
            console.print(f"[bold red]{row.name}[/]: last lines of {row.log}", markup=True)
            console.print(row.log_tail, markup=False, highlight=False)
    return 0


def _synthetic_line(choice: Any) -> str:
    if choice.fallback:
        return (f"SYNTHETIC DATA: no dataset location was given, so this suite runs on the synthetic stand-in in "
                f"{choice.root} (procedurally rendered faces, not a real dataset)")
    return f"SYNTHETIC DATA: the dataset at {choice.root} (from {choice.origin}) is marked synthetic"


def run_tune_command(args: argparse.Namespace) -> int:
    from fbench.data.locate import parse_data_flags
    from fbench.suite.load import load_suite
    from fbench.tune import TuneOptions, run_tune

    suite = load_suite(args.suite, args.overrides, data=parse_data_flags(args.data))
    options = TuneOptions(architecture=args.arch, trials=args.trials, timeout=args.timeout, storage=args.storage,
                          study_name=args.study_name, sampler=args.sampler, pruner=args.pruner,
                          objective=args.objective, fold=args.fold, budget=args.budget, seed=args.seed,
                          device=args.device, data=parse_data_flags(args.data),
                          tracking=False if args.no_tracking else None, tracking_uri=args.tracking_uri,
                          out=args.out, report=not args.no_report)
    console = _console()

    def trial_line(outcome: Any) -> None:
        values = ", ".join(f"{name} {value:.4g}" for name, value in outcome.values.items()
                           if name in ("val_accuracy", "val_loss", "macs", "params", "latency"))
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in outcome.params.items())
        detail = {"complete": values, "pruned": outcome.reason, "failed": outcome.reason[:300]}[outcome.state]
        colour = {"complete": "green", "pruned": "yellow", "failed": "red"}[outcome.state]
        console.print(f"trial {outcome.number} [{colour}]{outcome.state}[/] in {outcome.seconds:.0f} s: {detail}  "
                      f"[dim]({params})[/]", highlight=False)

    def note(text: str) -> None:
        console.print(f"fbench: {text}", highlight=False)

    if args.executor == "local":
        if args.workers != 1:
            raise FbenchError(f"--workers {args.workers} needs --executor local-jobs, slurm or debug (the local "
                              f"executor runs trials in this one process)")
        result = run_tune(suite, options, note=note, on_trial=trial_line)
    else:
        from fbench.tune.workers import TuneCluster, submit_tune

        cluster = TuneCluster(args.executor, args.workers, _cluster_resources(args), wait=not args.no_wait,
                              plugins=list(args.plugin or []))
        result = submit_tune(suite, options, cluster, note=note)
        if result.best_path is None:  # --no-wait
            return 0
    counts = result.counts
    mine = {state: sum(1 for o in result.outcomes if o.state == state) for state in ("complete", "pruned", "failed")}
    console.print(f"study {result.study_name}: this run added {len(result.outcomes)} trials ({mine['complete']} "
                  f"complete, {mine['pruned']} pruned, {mine['failed']} failed) in {result.seconds:.0f} s; the study "
                  f"holds {counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed",
                  highlight=False)
    report = f"  (report: {result.report['html']})" if result.report.get("html") else ""
    console.print(f"best: {result.best_path}{report}", highlight=False)
    console.print(f"evaluate it on the test split: fbench run {args.suite} --only {args.arch} --params "
                  f"{result.best_path}", highlight=False)
    return 0


def run_ui(args: argparse.Namespace) -> int:
    from fbench.tracking import run_ui as serve

    return serve(args.tracking_uri, port=args.port, experiment=args.experiment)


COMMANDS = {"list": run_list, "profile": run_profile, "data": run_data, "run": run_suite_command,
            "validate": run_validate, "leaderboard": run_stored, "rescore": run_stored, "status": run_status,
            "ui": run_ui, "tune": run_tune_command}


def main(argv: Sequence[str] | None = None) -> int:
    # fvcore and timm call TorchScript, which current torch marks as deprecated; that is not the user's concern.
    warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*TorchScript.*", category=DeprecationWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    previous_handler = _handle_sigterm()
    try:
        from fbench.registry import load_plugins

        if args.plugin and "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` does, so a plugin module beside the user is found
        load_plugins(args.plugin or [])
        return COMMANDS[args.command](args)
    except FbenchError as error:
        if debug:
            raise
        print(f"fbench: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, Terminated):
            resume = ("; finished cells are kept and the same command resumes (the running cell from its last "
                      "finished epoch)") if args.command == "run" else ""
            print(f"fbench: terminated (SIGTERM){resume}", file=sys.stderr)
            return EXIT_TERMINATED
        print("fbench: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def entry() -> None:
    """The ``fbench`` command and ``python -m fbench``: :func:`main`, then exit with its status.

    After SIGTERM, once every file is written (the finally blocks have run and the resume checkpoint's background
    write is waited for), the process ends with ``os._exit``: the interpreter's own teardown after a signal could
    abort in a native library's thread ("terminate called without an active exception", exit -6 instead of 143;
    seen about once in ten SIGTERMs during training)."""
    code = main()
    if code == EXIT_TERMINATED:
        wait_for_writes()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``kill`` and SLURM send), raised like Ctrl-C so that every ``with`` and ``finally`` runs:
    files being written are finished, MLflow runs end KILLED, cell locks are released, the UI's server stops."""


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once, as kill -9 would
    raise Terminated()


def _handle_sigterm() -> Any:
    """Turn SIGTERM into :class:`Terminated` while the command runs; the previous handler (None outside the main
    thread, where signals cannot be handled)."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        return None


if __name__ == "__main__":
    entry()
