"""Running one measurement in a fresh Python process, and reading its result back.

A child prints ``RESULT {json}`` as its last line; the parent parses it. Children run as
``python -m bench.<module>`` from the project root, so the checkout's ``story_fsm`` is the one
measured even when it is not installed.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "RESULT "


class ChildFailed(RuntimeError):
    """A measurement process exited with an error or printed no result."""


def emit(result: dict[str, Any]) -> None:
    """Print *result* as the process's final ``RESULT`` line."""
    sys.stdout.write("\n" + RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def peak_rss_kb() -> int:
    """Return this process's peak resident set size in KiB.

    Read from ``VmHWM``, which starts afresh at ``exec``; ``ru_maxrss`` would carry over the
    parent's peak from the fork.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # not Linux: best effort


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment for a child: the project root first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def parse_result(stdout: str) -> dict[str, Any]:
    """Return the JSON of the last ``RESULT`` line in *stdout*."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise ChildFailed("no RESULT line in the output:\n" + stdout[-2000:])


def run_command(
    cmd: list[str], *, timeout: float = 900, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run *cmd* from the project root and return its ``RESULT``.

    Raises:
        ChildFailed: The process failed, timed out, or printed no result.
    """
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=env or child_env(),
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"{' '.join(cmd)} took longer than {timeout:g}s") from exc
    if proc.returncode != 0:
        output = f"{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
        raise ChildFailed(f"{' '.join(cmd)} exited {proc.returncode}\n{output}")
    return parse_result(proc.stdout)


def run_child(
    module: str,
    *args: object,
    python: str = sys.executable,
    prefix: tuple[str, ...] = (),
    timeout: float = 900,
) -> dict[str, Any]:
    """Run ``python -m bench.<module> *args`` (behind *prefix*, e.g. strace) and parse it."""
    cmd = [*prefix, python, "-m", f"bench.{module}", *map(str, args)]
    return run_command(cmd, timeout=timeout)
