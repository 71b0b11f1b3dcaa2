"""The ``repro-ctx`` command line (also ``python -m repro_ctx``).

``repro-ctx`` alone shows what a scope covers here and checks a training step;
``doctor`` reports everything that decides reproducibility on this machine;
``run`` starts a program with the seed and the variables it needs;
``check`` runs a program several times and compares its outputs (stdout and
files: bytes, and what differs named as tensors where torch or NumPy reads them);
``env-diff`` compares two environment records and says which differences can
change results.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.seed import ENV_SEED_VARIABLE, hash_seed
from ..sources.environment import CUBLAS_WORKSPACE_CONFIG
from .arguments import pattern_argument, seed_argument
from .check_report import (
    CommandError,
    describe_difference,
    env_diff,
    next_steps,
    show_failure,
    stdout_note,
    stdout_output,
)
from .doctor import doctor_lines, doctor_report, main_job_lines
from .outputs import Output, first_difference, run_capturing, set_aside

PROG = "repro-ctx"


def _runs_argument(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (runs to compare), got {value}")
    return value


# ---------------------------------------------------------------------------
# repro-ctx (no command) and doctor: what a scope covers here, the self-check, the verdict
# ---------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    lines, reproducible = main_job_lines(0 if args.report_seed is None else args.report_seed)
    print("\n".join(lines))
    return 0 if reproducible else 1


def _doctor(args: argparse.Namespace) -> int:
    report = doctor_report(seed=args.seed)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print("\n".join(doctor_lines(report)))
    return 0 if report["deterministic"] else 1


def _env_diff(args: argparse.Namespace) -> int:
    return env_diff(args.first, args.second)


# ---------------------------------------------------------------------------
# run and check
# ---------------------------------------------------------------------------


def child_environment(seed: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment ``run`` gives its program: hash seed, cuBLAS workspace, the seed.

    ``CUBLAS_WORKSPACE_CONFIG`` is left as it is when already set.
    """
    env = dict(os.environ if base is None else base)
    env["PYTHONHASHSEED"] = hash_seed(seed)
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    env[ENV_SEED_VARIABLE] = str(seed)
    return env


def _exit_status(returncode: int) -> int:
    """A child's exit status as a shell reports it: 128 + N when killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _start(command: Sequence[str], env: Mapping[str, str], **kwargs: Any) -> Any:
    try:
        return subprocess.run(list(command), env=dict(env), check=False, **kwargs)
    except FileNotFoundError:
        raise CommandError(f"command not found: {command[0]}", 127) from None
    except PermissionError:
        raise CommandError(f"command not executable: {command[0]}", 126) from None


def _run(args: argparse.Namespace) -> int:
    completed = _start(args.command, child_environment(args.seed))
    return _exit_status(completed.returncode)


def _progress(message: str) -> None:
    print(f"{PROG} check: {message}", file=sys.stderr, flush=True)


def _started(command: Sequence[str], env: Mapping[str, str]) -> Any:
    try:
        return run_capturing(command, env)
    except FileNotFoundError:
        raise CommandError(f"command not found: {command[0]}", 127) from None
    except PermissionError:
        raise CommandError(f"command not executable: {command[0]}", 126) from None


def _check(args: argparse.Namespace) -> int:
    import tempfile

    env = child_environment(args.seed)
    paths: list[str] = args.compare
    command: list[str] = args.command
    for path in paths:
        if os.path.lexists(path) and not os.path.isfile(path):
            raise CommandError(f"--compare {path}: not a regular file", 2)
    if args.ignore_stdout and not paths:
        raise CommandError("--ignore-stdout leaves nothing to compare: name the output "
                            "files with --compare PATH", 2)
    compared = [stdout_note(args.ignore_stdout, args.mask_stdout), *paths]
    _progress(f"{args.runs} runs of {shlex.join(command)} (seed {args.seed}), comparing "
              f"{', '.join(compared)}")
    with tempfile.TemporaryDirectory(prefix="repro-ctx-check-") as keep:
        reference: list[Output] = []
        for run in range(1, args.runs + 1):
            _progress(f"run {run}/{args.runs} ...")
            started = time.perf_counter()
            with set_aside(paths):
                completed = _started(command, env)
                status = _exit_status(completed.returncode)
                _progress(f"run {run}/{args.runs} finished in "
                          f"{time.perf_counter() - started:.1f}s, exit status {status}")
                if status != 0:
                    show_failure(run, status, completed.stdout, completed.stderr_tail)
                    return 1
                missing = [path for path in paths if not os.path.isfile(path)]
                if missing:
                    print(f"{PROG} check: run {run} did not write {', '.join(missing)} "
                          "(--compare names files that the command writes)", file=sys.stderr)
                    return 1
                outputs = [] if args.ignore_stdout else [
                    stdout_output(completed.stdout, args.mask_stdout)]
                outputs.extend(Output.from_file(path, path) for path in paths)
                if run == 1:
                    reference = [output.keep(keep) for output in outputs]
                    continue
                differ = [(ref, out) for ref, out in zip(reference, outputs, strict=True)
                          if first_difference(ref, out) is not None]
                if differ:
                    names = [ref.name for ref, _ in differ]
                    same = [ref.name for ref in reference if ref.name not in names]
                    matched = f"; matched: {', '.join(same)}" if same else ""
                    print(f"{PROG} check: run {run} differs from run 1 in "
                          f"{', '.join(names)}{matched}")
                    for ref, out in differ:
                        print(describe_difference(ref, out, f"run {run}"))
                    print("\n".join(next_steps(command, args.seed)))
                    return 1
            _progress(f"run {run}/{args.runs} matched run 1")
        sizes = ", ".join(f"{ref.name} ({ref.size} bytes)" for ref in reference)
        ignored = "; stdout not compared (--ignore-stdout)" if args.ignore_stdout else ""
        print(f"{PROG} check: all {args.runs} runs matched, every output identical to run "
              f"1's: {sizes}{ignored}")
    return 0


# ---------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Scoped reproducibility for PyTorch and NumPy. With no command: show what "
        "a scope covers here and check that a training step is reproducible inside one.",
    )
    parser.add_argument("--seed", dest="report_seed", type=seed_argument, default=None, metavar="N",
                        help="seed for the self-check (default 0)")
    parser.set_defaults(handler=_report, command_name=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    doctor = commands.add_parser(
        "doctor", help="versions, devices, every determinism flag, and a self-check",
        description="Report the versions of Python, torch, CUDA, cuDNN and NumPy, the devices, "
        "every determinism flag, hash randomisation and CUBLAS_WORKSPACE_CONFIG, then run a "
        "small training step twice in a scope (CPU, and CUDA where present) and compare the "
        "results bitwise. Exits 1 when it finds nondeterminism. --json adds the full "
        f"environment record (builds, CPU capability, BLAS, threads, variables, packages, git "
        f"commit), which `{PROG} env-diff` compares.",
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument("--seed", type=seed_argument, default=0,
                        help="seed for the self-check (default 0)")
    doctor.set_defaults(handler=_doctor, command_name="doctor")

    run = commands.add_parser(
        "run", help="run CMD with the seed, PYTHONHASHSEED and CUBLAS_WORKSPACE_CONFIG set",
        usage=f"{PROG} run [-h] [--seed N] -- CMD...",
        description=f"Run CMD with {ENV_SEED_VARIABLE}=N (read it with repro_ctx.env_seed()), "
        "PYTHONHASHSEED derived from N and CUBLAS_WORKSPACE_CONFIG=:4096:8 (unless already "
        "set). Exits with CMD's exit status.",
    )
    run.add_argument("--seed", type=seed_argument, default=0, metavar="N",
                     help="the seed handed to CMD (default 0)")
    run.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    run.set_defaults(handler=_run, command_name="run")

    check = commands.add_parser(
        "check", help="run CMD several times under `run` and compare its outputs",
        usage=f"{PROG} check [-h] [-n RUNS] [--seed N] [--compare PATH ...] [--ignore-stdout] "
        "[--mask-stdout REGEX] -- CMD...",
        description="Run CMD several times under `run` (same seed each time) and compare its "
        "stdout and the named output files with run 1's. Where a file differs, a file torch "
        "or NumPy reads (.pt, .pth, .npy, .npz, .safetensors) is read as tensors to name "
        "the tensor and element that differ; any other output gets the first differing "
        "line and byte offset. Exits 0 only when every run matched.",
    )
    check.add_argument("-n", "--runs", type=_runs_argument, default=2,
                       help="how many runs (at least 2, default 2)")
    check.add_argument("--seed", type=seed_argument, default=0, metavar="N",
                       help="the seed handed to CMD (default 0)")
    check.add_argument("--compare", action="extend", nargs="+", default=[], metavar="PATH",
                       help="an output file of CMD to compare too (repeatable)")
    check.add_argument("--ignore-stdout", action="store_true",
                       help="do not compare stdout (a program that prints timings); "
                       "needs --compare")
    check.add_argument("--mask-stdout", action="append", default=[], type=pattern_argument,
                       metavar="REGEX", help="replace what REGEX matches in stdout before "
                       "comparing it (repeatable), e.g. 'took [0-9.]+s'")
    check.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    check.set_defaults(handler=_check, command_name="check")

    env_diff = commands.add_parser(
        "env-diff", help="compare two environment records: which differences can change results",
        description="Compare the environments in two files: `repro-ctx doctor --json` reports, "
        "files written by repro_ctx.record(), or records themselves. Lists each difference "
        "and how it can change results, then a verdict line. Exits 1 when a difference can "
        "change results, 0 when none can, 2 when a file holds no record.",
    )
    env_diff.add_argument("first", metavar="A.json")
    env_diff.add_argument("second", metavar="B.json")
    env_diff.set_defaults(handler=_env_diff, command_name="env-diff")
    return parser


def _forgotten_separator(name: str, arguments: list[str], compare: list[str]) -> str:
    """How to give the command; where ``--compare`` took the command's words, say so.

    ``--compare`` takes one or more paths, so without ``--`` it takes the
    command too. The command starts at the first word that is a program on
    PATH (or a script): everything from there was meant to run.
    """
    usage = f"{PROG} {name} [options] -- CMD..."
    start = next(
        (i for i, word in enumerate(compare)
         if shutil.which(word) is not None or word.endswith((".py", ".sh"))),
        None,
    )
    if start is None:
        return usage
    taken = compare[start:]
    # the last run of these words in the arguments is where --compare took them
    at = max(i for i in range(len(arguments) - len(taken) + 1)
             if arguments[i : i + len(taken)] == taken)
    rest = arguments[:at] + arguments[at + len(taken) :]
    quoted = [f"`{word}`" for word in taken[:3]] + (["the rest"] if len(taken) > 3 else [])
    words = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
    suggestion = shlex.join([PROG, *rest, "--", *taken])
    return (f"{words} {'were' if len(taken) > 1 else 'was'} taken as --compare files; "
            f"put the command after `--`: {suggestion}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``repro-ctx`` and ``python -m repro_ctx``; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    tail: list[str] | None = None
    if "--" in arguments:  # everything after the first `--` is the command, untouched
        split = arguments.index("--")
        arguments, tail = arguments[:split], arguments[split + 1 :]
    parser = build_parser()
    args, unknown = parser.parse_known_args(arguments)
    name = args.command_name
    if unknown:
        hint = ""
        if name in ("run", "check") and tail is None:
            hint = f" (the command's own options go after `--`: {PROG} {name} [options] -- CMD...)"
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    if name is not None and args.report_seed is not None:
        parser.error(f"--seed goes after the command: {PROG} {name} --seed N")
    if name in ("run", "check"):
        if tail is not None and args.command:
            parser.error(f"give the command once, after --: {PROG} {name} ... -- CMD...")
        args.command = tail if tail is not None else args.command
        if not args.command:
            print(f"{PROG} {name}: error: no command given: "
                  f"{_forgotten_separator(name, arguments, getattr(args, 'compare', []))}",
                  file=sys.stderr)
            return 2
    elif tail is not None:
        parser.error(f"`-- CMD` goes with `{PROG} run` or `{PROG} check`")
    try:
        return int(args.handler(args))
    except CommandError as exc:
        print(f"{PROG} {name}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
