"""Run ``python script.py args`` in a process forked from a server that has already imported the heavy
dependencies (torch, transformers, the frameworks): each run still gets a process of its own, a
fresh ``__main__``, its own cwd and environment, and its exit handlers run, but skips the ~5 s of
imports a new interpreter pays. The README blocks and examples run this way.

Where fork is unavailable (not Linux), it falls back to a new interpreter per run.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

PRELOAD = [
    "torch",
    "transformers",
    "qdrant_client",
    "llama_index.core",
    "langchain_core.retrievers",
    "lateint_plugins.core.encoder",
    "lateint_plugins.core.store",
]
_USE_FORKSERVER = "forkserver" in multiprocessing.get_all_start_methods()


def run_script(
    script: Path, args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Like ``subprocess.run([sys.executable, script, *args], capture_output=True, text=True, ...)``."""
    argv = [str(script), *args]
    if not _USE_FORKSERVER:
        return subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
        )
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        process = context.Process(target=_main, args=(argv, str(cwd), env, str(out), str(err)))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(argv, timeout)
        return subprocess.CompletedProcess(
            argv, process.exitcode, out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")
        )


def _main(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """In the forked child: become ``python argv[0] argv[1:]`` and exit as it would."""
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    # An interpreter started on a script puts its folder first, and not the test runner's folders.
    here = {"", os.getcwd(), os.path.dirname(os.path.abspath(__file__))}
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    script = os.path.abspath(argv[0])
    sys.argv = [script, *argv[1:]]
    sys.path[:] = [os.path.dirname(script), *(p for p in sys.path if p not in here)]
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        if isinstance(stop.code, int) or stop.code is None:
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
