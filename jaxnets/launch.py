"""``jaxnets launch``: run a script as P processes on this machine, the way a cluster would.

Each process is started with the coordinator on 127.0.0.1 and its id in the environment
(:data:`jaxnets.distributed.LAUNCH_ENV`), which :func:`jaxnets.distributed.configure` reads
to call :func:`jax.distributed.initialize`: the same multi-process program that runs on
several hosts, here on one, to try it and to test it. Process 0's output is shown as it
comes; every other process writes to a log file, shown (its tail) only if it fails. When a
process exits with an error, or dies, the launcher stops the others at once and exits with
an error that names it, instead of leaving them blocked in a collective.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from jaxnets.distributed import LAUNCH_ENV

__all__ = ["LaunchError", "free_port", "launch"]

POLL_S = 0.1
STOP_GRACE_S = 5.0


class LaunchError(RuntimeError):
    """A launched process failed; ``process_id`` and ``returncode`` say which and how."""

    def __init__(self, message: str, process_id: int, returncode: int):
        super().__init__(message)
        self.process_id = process_id
        self.returncode = returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the coordinator)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text)


def launch(
    command: Sequence[str],
    processes: int,
    *,
    devices_per_process: int = 1,
    env: Mapping[str, str] | None = None,
    log_dir: str | Path | None = None,
) -> int:
    """Run ``command`` (an argv list) as ``processes`` cooperating processes and wait.

    Args:
      command: e.g. ``[sys.executable, "experiments/digits.py", "--smoke"]``.
      processes: how many processes (P); process 0 hosts the coordinator.
      devices_per_process: virtual CPU devices (or first accelerators) per process (K), so
        the run's mesh has P * K devices.
      env: base environment (default ``os.environ``).
      log_dir: where processes 1..P-1 write ``process-<i>.log`` (default: a new temp dir).
    Returns:
      0 when every process exited with 0.
    Raises:
      LaunchError: the first process to fail, with its exit status and the tail of its log;
        the remaining processes are terminated (then killed after a grace period).
    """
    if processes < 1:
        raise ValueError(f"need at least 1 process; got {processes}")
    if devices_per_process < 1:
        raise ValueError(f"need at least 1 device per process; got {devices_per_process}")
    if not command:
        raise ValueError("no command to launch")
    logs = Path(log_dir or tempfile.mkdtemp(prefix="jaxnets-launch-"))
    logs.mkdir(parents=True, exist_ok=True)
    base = dict(os.environ if env is None else env)
    base[LAUNCH_ENV["coordinator"]] = f"127.0.0.1:{free_port()}"
    base[LAUNCH_ENV["num_processes"]] = str(processes)
    base[LAUNCH_ENV["devices_per_process"]] = str(devices_per_process)
    children: list[subprocess.Popen] = []
    files = []
    try:
        for i in range(processes):
            child_env = {**base, LAUNCH_ENV["process_id"]: str(i)}
            if i == 0:
                out = None  # process 0 talks to the terminal
            else:
                out = open(logs / f"process-{i}.log", "w")  # noqa: SIM115 (closed below)
                files.append(out)
            children.append(
                subprocess.Popen(
                    list(command),
                    env=child_env,
                    stdout=out,
                    stderr=subprocess.STDOUT if out else None,
                )
            )
        return _wait(children, logs)
    finally:
        _stop(children)
        for f in files:
            f.close()


def _wait(children: list[subprocess.Popen], logs: Path) -> int:
    running = set(range(len(children)))
    while running:
        for i in sorted(running):
            code = children[i].poll()
            if code is None:
                continue
            running.discard(i)
            if code != 0:
                where = "its output is above" if i == 0 else f"log {logs / f'process-{i}.log'}"
                tail = "" if i == 0 else "\n" + _tail(logs / f"process-{i}.log")
                raise LaunchError(
                    f"process {i} of {len(children)} {_describe(code)}; stopped the others "
                    f"({where}){tail}",
                    i,
                    code,
                )
        time.sleep(POLL_S)
    return 0


def _stop(children: list[subprocess.Popen]) -> None:
    alive = [c for c in children if c.poll() is None]
    for c in alive:
        c.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for c in alive:
        try:
            c.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jaxnets.launch -n P [--devices-per-process K] SCRIPT [ARGS...]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="jaxnets launch",
        description=(
            "Run a Python script as P processes of one jax.distributed run on this machine "
            "(coordinator on 127.0.0.1). The script joins through jaxnets.distributed."
            "configure (the experiment scripts do). Process 0's output is shown; the others "
            "log to files, shown if they fail. A failing process stops the rest."
        ),
    )
    parser.add_argument("-n", "--processes", type=int, required=True, help="processes (P)")
    parser.add_argument(
        "--devices-per-process",
        type=int,
        default=1,
        help="virtual CPU devices (or first accelerators) per process (default 1)",
    )
    parser.add_argument("--log-dir", default=None, help="where processes 1.. write their logs")
    parser.add_argument("script", help="a Python script, e.g. experiments/digits.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    args = parser.parse_args(argv)
    if not Path(args.script).is_file():
        parser.error(f"no such script: {args.script}")
    try:
        return launch(
            [sys.executable, args.script, *args.args],
            args.processes,
            devices_per_process=args.devices_per_process,
            log_dir=args.log_dir,
        )
    except ValueError as err:
        parser.error(str(err))
    except LaunchError as err:
        print(f"jaxnets launch: error: {err}", file=sys.stderr)
        return err.returncode if err.returncode > 0 else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
