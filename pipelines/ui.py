"""`routing ui`: the Dagster webserver and daemon over a ROUTING_HOME, on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from routing_pipelines.assets import names
from routing_pipelines.learn import dagster_folder, dagster_instance
from routing_runtime.home import NotInitialisedError, db_path, resolve_home

WORKSPACE = f"""\
load_from:
  - python_module:
      module_name: {names.CODE_MODULE}
      attribute: defs
      location_name: {names.CODE_LOCATION}
"""


def workspace_file(home: Path) -> Path:
    """The workspace `routing ui` serves: the code location under the name runs of `routing learn`
    are labelled with (``-m`` alone would name it after the module and attribute)."""
    path = Path(dagster_folder(home)) / "workspace.yaml"
    path.write_text(WORKSPACE, encoding="utf-8")
    return path


def ui_environment(home: Path) -> dict[str, str]:
    dagster_instance(home)  # creates dagster_home/dagster.yaml on first use
    # dagster_folder names the folder so that Dagster's storage URLs work for any home path; the
    # webserver and daemon are children of this process, which keeps the handle open.
    return {**os.environ, "ROUTING_HOME": str(home), "DAGSTER_HOME": dagster_folder(home)}


def run_ui(home: str | None, port: int, *, daemon: bool = True) -> int:
    """Serve the UI until interrupted; the daemon runs the 02:00 UTC schedule."""
    home_path = resolve_home(home)
    if not db_path(home_path).exists():
        raise NotInitialisedError(f"{home_path} is not initialised: run `routing init --home {home_path}`")
    env = ui_environment(home_path)
    bin_dir = Path(sys.executable).parent
    workspace = ["-w", str(workspace_file(home_path))]
    processes = [subprocess.Popen([str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), *workspace], env=env)]
    if daemon:
        processes.append(subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", *workspace], env=env))
    # `kill` and service managers send SIGTERM: stop the children as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"Dagster UI for {home_path} on http://127.0.0.1:{port} (daemon {'on' if daemon else 'off'}); Ctrl-C stops it", file=sys.stderr)
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in processes:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    failed = [p.returncode for p in processes if p.returncode not in (0, -signal.SIGINT, None)]
    return 1 if failed else 0
