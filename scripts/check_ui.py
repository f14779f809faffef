#!/usr/bin/env python3
"""Check `routing ui` end to end in a real headless browser, and keep screenshots of it.

What it does, in a temporary folder that it deletes afterwards:

1. ``routing demo --days 2 --requests-per-day 200 --home TMP/home`` (a small demo home);
2. ``routing ui --home TMP/home --port PORT`` on a free port, waiting for ``/server_info``;
3. over GraphQL: the code location loaded, the nightly schedule RUNNING and the daemon's
   scheduler healthy;
4. in headless Chromium, driven through chromedriver's W3C WebDriver HTTP API (standard
   library only, no Selenium), the global asset lineage page: every asset drawn with its full
   name, ``model_routing_rules`` materialised (screenshot ``ui-asset-graph.png``);
5. the same page filtered to ``+key:"model_routing_rules"`` (the rules and everything
   upstream): the learning chain and the ``model_performance`` log;
6. the demo report attached to ``model_routing_rules`` (``demo_report``, "Routing demo: ...");
7. the job page of ``nightly_learning``: it lists the runs `routing learn` made for the demo
   (screenshot ``ui-job-runs.png``);
8. **Materialize** clicked on the page of ``model_routing_rules``: the run it launches succeeds,
   publishes the next rule set, and the asset's newest event shows that ``rule_set_version``
   and its ``gate`` result (as ``routing history`` records it) in its metadata (screenshot
   ``ui-rules-materialized.png``);
9. SIGTERM to ``routing ui``: it must exit 0 and leave no process of its session running.

Steps 4-8 each run even when an earlier one failed, so one run names every broken page.
Needs ``chromium`` and ``chromedriver`` on PATH (Debian: ``apt-get install chromium
chromium-driver``). Prints every check; exits 1 naming each failure.

    .venv/bin/python scripts/check_ui.py [--screenshots docs]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCREENSHOTS = PROJECT_ROOT / "docs"
#: What each screenshot shows, by file name (written into ``--screenshots``).
GRAPH_PNG, JOB_RUNS_PNG, MATERIALIZED_PNG = "ui-asset-graph.png", "ui-job-runs.png", "ui-rules-materialized.png"

RULES = "model_routing_rules"
LOGS = ("routing_decisions", "model_performance")
ALL_ASSETS = (*LOGS, "daily_model_stats", "model_posteriors", "candidate_routing_rules", "policy_evaluation", RULES,
              "specialist_vs_generalist")
UPSTREAM_OF_RULES = ("model_performance", "routing_decisions", "daily_model_stats", "model_posteriors",
                     "candidate_routing_rules", "policy_evaluation")
SCHEDULE = "nightly_learning_0200_utc"
JOB = "nightly_learning"

#: CSS pixels of the page. With the navigation and the asset sidebar hidden, the whole graph
#: fits at a zoom above Dagster's "minimal" threshold (0.6) under which nodes
#: show only a truncated name: here they show full names and their status rows.
VIEWPORT = (2000, 1150)
DEVICE_SCALE = 1.25  # the PNG is 2500 x 1440, sharp enough to read the node rows
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
    f"--force-device-scale-factor={DEVICE_SCALE}",
]

UI_START_TIMEOUT = 90.0
PAGE_TIMEOUT = 45.0
RUN_TIMEOUT = 120.0  # a run launched from the UI: a fresh process imports Dagster, then learns

T = TypeVar("T")
STARTED = time.monotonic()


class CheckFailed(Exception):
    """A check did not hold; the message says which and what was seen instead."""


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Call ``probe`` until it returns something other than None; connection errors mean "not yet".

    ``probe`` may raise CheckFailed to give up at once. On timeout the last error or the
    last value seen is part of the message.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value is not None:
                return value
        except (OSError, urllib.error.URLError, json.JSONDecodeError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last: {last})" if last else ""))
        time.sleep(interval)


def http_json(url: str, body: object | None = None, method: str | None = None, timeout: float = 30.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method or ("GET" if data is None else "POST"),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


# --------------------------------------------------------------------------------------------
# The browser: chromedriver's W3C WebDriver protocol over plain HTTP.


class Browser:
    """Headless Chromium through a chromedriver child process (own session, killed on close)."""

    def __init__(self, chromium: str, chromedriver: str, workdir: Path) -> None:
        self.port = free_port()
        self._log: IO[bytes] = open(workdir / "chromedriver.log", "wb")  # noqa: SIM115 (closed in close())
        self.driver = subprocess.Popen([chromedriver, f"--port={self.port}"], stdout=self._log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.session: str | None = None
        try:
            wait_for("chromedriver", lambda: self._call("GET", "/status").get("ready") or None, 20, 0.1)
            options = {"binary": chromium, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'chromium-profile'}"]}
            created = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": options}}})
            self.session = created["sessionId"]
            self.version = str(created["capabilities"].get("browserVersion", "?"))
            self._fit_viewport()
        except BaseException:
            self.close()
            raise

    def _call(self, method: str, path: str, body: object | None = None) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            return http_json(url, body, method, timeout=60)["value"]
        except urllib.error.HTTPError as exc:
            try:
                value = json.load(exc)["value"]
                detail = f"{value.get('error')}: {str(value.get('message', '')).splitlines()[0]}"
            except (ValueError, KeyError, AttributeError, IndexError):
                detail = str(exc)
            raise CheckFailed(f"WebDriver {method} {path}: {detail}") from None

    def _session_call(self, method: str, path: str, body: object | None = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def _fit_viewport(self) -> None:
        """Size the window so that the page itself (not the window) is VIEWPORT."""
        width, height = VIEWPORT
        for _ in range(3):  # the window's frame, then rounding at a fractional device scale
            inner_w, inner_h = self.js("return [window.innerWidth, window.innerHeight]")
            if (inner_w, inner_h) == (width, height):
                return
            rect = self._session_call("GET", "/window/rect")
            self._session_call("POST", "/window/rect", {"width": rect["width"] + width - inner_w,
                                                         "height": rect["height"] + height - inner_h})

    def get(self, url: str) -> None:
        self._session_call("POST", "/url", {"url": url})

    def js(self, script: str, *args: object) -> Any:
        return self._session_call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._session_call("GET", "/screenshot"))

    def close(self) -> None:
        try:
            if self.session is not None and self.driver.poll() is None:
                self._call("DELETE", f"/session/{self.session}")
        except (CheckFailed, OSError):
            pass
        finally:
            self.session = None
            if self.driver.poll() is None:
                self.driver.terminate()
                try:
                    self.driver.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.driver.kill()
            # Chromium runs in chromedriver's session: nothing of it may outlive us.
            kill_session(self.driver.pid)
            self._log.close()


# --------------------------------------------------------------------------------------------
# Processes: `routing ui` runs in its own session, so everything it starts can be found.


def session_processes(session_id: int) -> dict[int, str]:
    """Live (non-zombie) processes of session ``session_id``: pid -> command line (Linux /proc)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2:].split()[:4]
            if int(session) == session_id and state != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            continue
    return found


def routing_command() -> list[str]:
    """`routing` from this interpreter's environment (the venv), else from PATH."""
    beside = Path(sys.executable).parent / "routing"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("routing")
    if found:
        return [found]
    return [sys.executable, "-m", "routing_runtime.cli"]


def make_demo_home(home: Path) -> None:
    argv = [*routing_command(), "demo", "--days", "2", "--requests-per-day", "200", "--home", str(home)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise CheckFailed(f"`{' '.join(argv)}` exited {done.returncode}:\n{done.stderr[-2000:]}")
    if not (home / "report.md").exists():
        raise CheckFailed(f"`routing demo` wrote no report.md in {home}")
    log(f"ok   demo home {home}, report.md written")


def describe(command: str) -> str:
    """A short name for a process: ``dagster-webserver``, ``dagster api grpc``, ``routing``..."""
    parts = command.split()
    if len(parts) > 1 and Path(parts[0]).name.startswith("python"):
        parts = parts[1:]
        if parts[0] == "-m":
            return " ".join(parts[1:4])
    return Path(parts[0]).name if parts else "?"


def stop_ui(ui: subprocess.Popen[bytes]) -> None:
    """SIGTERM `routing ui` as a service manager would; it must exit 0 and leave nothing behind."""
    if ui.poll() is not None:
        raise CheckFailed(f"`routing ui` had already exited with {ui.returncode}")
    before = session_processes(ui.pid)
    stopping = time.monotonic()
    ui.send_signal(signal.SIGTERM)
    try:
        code = ui.wait(timeout=40)
    except subprocess.TimeoutExpired:
        raise CheckFailed("`routing ui` did not exit within 40 s of SIGTERM") from None
    if code != 0:
        raise CheckFailed(f"`routing ui` exited {code} on SIGTERM (expected 0)")
    try:
        wait_for("every process of `routing ui` to exit", lambda: True if not session_processes(ui.pid) else None, 10, 0.25)
    except CheckFailed:
        left = session_processes(ui.pid)
        raise CheckFailed("still running 10 s after `routing ui` exited:\n  "
                          + "\n  ".join(f"{pid}: {cmd[:160]}" for pid, cmd in sorted(left.items()))) from None
    kinds = Counter(describe(cmd) for cmd in before.values())
    listed = ", ".join(f"{name}{f' x{n}' if n > 1 else ''}" for name, n in sorted(kinds.items()))
    log(f"ok   SIGTERM: `routing ui` exited 0 after {time.monotonic() - stopping:.1f}s;"
        f" none of its {len(before)} processes ({listed}) is left running")


def kill_session(session_id: int) -> dict[int, str]:
    left = session_processes(session_id)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


# --------------------------------------------------------------------------------------------
# The checks.

WORKSPACE_QUERY = """{
  workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message }
      ... on RepositoryLocation { name repositories { name schedules { name cronSchedule scheduleState { status } } } } } } } }
  assetNodes { assetKey { path } groupName repository { name location { name } } }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } }
}"""


def graphql(base: str, query: str) -> dict[str, Any]:
    answer = http_json(f"{base}/graphql", {"query": query})
    if answer.get("errors"):
        raise CheckFailed(f"GraphQL errors: {answer['errors']}")
    return dict(answer["data"])


def check_workspace(base: str) -> dict[str, tuple[str, str, str]]:
    """The code location loaded, the schedule RUNNING, the scheduler daemon healthy.

    Returns asset name -> (group, repository, location)."""

    def loaded() -> dict[str, Any] | None:
        data = graphql(base, WORKSPACE_QUERY)
        entries = data["workspaceOrError"].get("locationEntries") or []
        if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
            return None
        for entry in entries:
            if entry["locationOrLoadError"]["__typename"] == "PythonError":
                raise CheckFailed(f"code location {entry['name']} failed to load: {entry['locationOrLoadError']['message']}")
        return data

    data = wait_for("the code location to load", loaded, 60)
    schedules = {s["name"]: s for e in data["workspaceOrError"]["locationEntries"]
                 for r in e["locationOrLoadError"]["repositories"] for s in r["schedules"]}
    if SCHEDULE not in schedules:
        raise CheckFailed(f"schedule {SCHEDULE} not in the workspace (schedules: {sorted(schedules)})")
    status = schedules[SCHEDULE]["scheduleState"]["status"]
    if status != "RUNNING":
        raise CheckFailed(f"schedule {SCHEDULE} is {status}, expected RUNNING")
    log(f"ok   schedule {SCHEDULE} ({schedules[SCHEDULE]['cronSchedule']}) is RUNNING")

    def scheduler_healthy() -> bool | None:
        statuses = graphql(base, "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }")
        healthy = {d["daemonType"]: d["healthy"] for d in statuses["instance"]["daemonHealth"]["allDaemonStatuses"]}
        return True if healthy.get("SCHEDULER") else None

    wait_for("the daemon's SCHEDULER heartbeat", scheduler_healthy, 60, 1.0)
    log("ok   dagster-daemon is up: the SCHEDULER daemon reports healthy")

    assets = {"/".join(n["assetKey"]["path"]): (n["groupName"], n["repository"]["name"], n["repository"]["location"]["name"])
              for n in data["assetNodes"]}
    missing = [a for a in ALL_ASSETS if a not in assets]
    if missing:
        raise CheckFailed(f"assets missing from the code location: {missing} (found {sorted(assets)})")
    return assets


#: Asset nodes drawn in the lineage graph: name (Dagster's data-tooltip) -> the node's text.
#: Dagster only renders nodes inside the viewport, so "drawn" means "on screen".
GRAPH_NODES_JS = """
const svg = document.querySelector("svg[class*=svgContainer]");
if (!svg) return null;
const nodes = {};
for (const el of svg.querySelectorAll("foreignObject [data-tooltip]")) {
  const box = el.closest("foreignObject");  // an SVG element: its HTML child has the innerText
  nodes[el.getAttribute("data-tooltip")] = ((box && box.firstElementChild) || el).innerText || "";
}
return {transform: svg.parentElement.style.transform, nodes: nodes};
"""


class GraphProbe:
    """Polled until ``wanted`` are all drawn and the rules node shows its materialisation."""

    def __init__(self, browser: Browser, wanted: tuple[str, ...]) -> None:
        self.browser, self.wanted = browser, wanted
        self.seen: dict[str, str] = {}

    def __call__(self) -> dict[str, str] | None:
        state = self.browser.js(GRAPH_NODES_JS)
        if not state:
            return None
        self.seen = dict(state["nodes"])
        if all(name in self.seen for name in self.wanted) and "Materialized" in (self.seen.get(RULES) or ""):
            return self.seen
        return None


#: Hide the lineage page's asset sidebar, then double-click the background: Dagster re-fits
#: the graph to the wider canvas (the zoom it fitted on load is kept otherwise).
WIDEN_GRAPH_JS = """
const svg = document.querySelector("svg[class*=svgContainer]");
if (!svg || svg.querySelectorAll("foreignObject").length === 0) return null;
let hidden = false;
for (const button of document.querySelectorAll("button")) {
  if (button.querySelector("[aria-label=panel_show_right]")) { button.click(); hidden = true; break; }
}
return hidden;
"""
RECENTRE_JS = """
const svg = document.querySelector("svg[class*=svgContainer]");
const box = svg.parentElement.parentElement.getBoundingClientRect();
svg.parentElement.parentElement.dispatchEvent(new MouseEvent("dblclick", {
  bubbles: true, cancelable: true, clientX: box.left + 8, clientY: box.bottom - 8}));
return svg.parentElement.style.transform;
"""
ZOOM_JS = """return document.querySelector("svg[class*=svgContainer]").parentElement.style.transform;"""


def wait_for_graph(browser: Browser, url: str, wanted: tuple[str, ...], what: str) -> dict[str, str]:
    """Open a lineage page, give the graph the whole width, and wait until ``wanted`` are drawn."""
    browser.get(url)
    if wait_for(f"the graph on {url} to be laid out", lambda: browser.js(WIDEN_GRAPH_JS), PAGE_TIMEOUT, 0.25):
        time.sleep(0.3)
        browser.js(RECENTRE_JS)
        zooms: list[str] = []

        def settled() -> str | None:  # the re-fit is animated: wait for two equal readings
            zooms.append(browser.js(ZOOM_JS))
            return zooms[-1] if len(zooms) > 1 and zooms[-1] == zooms[-2] else None

        wait_for("the graph to settle at its new zoom", settled, 10, 0.3)
    probe = GraphProbe(browser, wanted)
    try:
        return wait_for(what, probe, PAGE_TIMEOUT, 0.25)
    except CheckFailed as exc:
        hint = "" if probe.seen else (" (no node with a full name: is the graph zoomed out below"
                                      " Dagster's 'minimal' scale, e.g. a narrower viewport?)")
        raise CheckFailed(f"{exc}; drawn: {sorted(probe.seen) or 'nothing'}{hint}; "
                          f"{RULES} node text: {probe.seen.get(RULES, '-')!r}") from None


def expanded_groups(assets: dict[str, tuple[str, str, str]]) -> str:
    """The ``expanded`` query value that opens every asset group in the lineage graph.

    Dagster names a group ``global@global:GROUP``, or ``REPO@LOCATION:GROUP`` when its
    groups-per-code-location flag is on; both are given, the unknown ones are ignored."""
    ids: list[str] = []
    for group, repo, location in sorted(set(assets.values())):
        ids += [f"global@global:{group}", f"{repo}@{location}:{group}"]
    return urllib.parse.quote(",".join(ids), safe="@:,")


def check_asset_graph(browser: Browser, base: str, assets: dict[str, tuple[str, str, str]], screenshot: Path) -> str:
    url = f"{base}/asset-groups?expanded={expanded_groups(assets)}"
    nodes = wait_for_graph(browser, url, ALL_ASSETS, "the global asset lineage to draw every asset")
    time.sleep(1.0)  # let the last edges and status rows settle before the picture
    groups = sorted({assets[a][0] for a in ALL_ASSETS})
    missing_groups = [g for g in groups if g not in nodes]
    if missing_groups:
        raise CheckFailed(f"asset groups not drawn on {url}: {missing_groups}")
    by_group = "; ".join(f"{g}: {', '.join(a for a in ALL_ASSETS if assets[a][0] == g)}" for g in groups)
    log(f"ok   {url}\n         draws all {len(ALL_ASSETS)} assets by group ({by_group});"
        f" {RULES} shows 'Materialized'")
    save_screenshot(browser, screenshot, "the asset graph")
    return url


def save_screenshot(browser: Browser, path: Path, what: str) -> None:
    png = browser.screenshot()
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 20_000:
        raise CheckFailed(f"the screenshot of {what} is not a plausible PNG ({len(png)} bytes)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    log(f"ok   screenshot of {what}: {path} ({len(png) // 1024} KiB)")


def check_upstream(browser: Browser, base: str, assets: dict[str, tuple[str, str, str]]) -> str:
    """The graph filtered to the rules and all their ancestors contains the log it learns from."""
    query = urllib.parse.quote(f'+key:"{RULES}"', safe="")
    url = f"{base}/asset-groups~{query}?expanded={expanded_groups(assets)}"
    nodes = wait_for_graph(browser, url, (RULES, *UPSTREAM_OF_RULES), f"the upstream graph of {RULES}")
    drawn = [a for a in ALL_ASSETS if a in nodes and a != RULES]
    logs = [a for a in drawn if assets[a][0] == "logs"]
    log(f"ok   {url}\n         upstream of {RULES}: {', '.join(f'{a} ({assets[a][0]})' for a in drawn)};"
        f" from the logs: {', '.join(logs)}")
    return url


SHOW_REPORT_JS = """
for (const row of document.querySelectorAll("tr")) {
  if (!row.innerText.trim().startsWith("demo_report")) continue;
  const link = Array.from(row.querySelectorAll("a, button")).find(e => e.innerText.trim() === "[Show Markdown]");
  if (link) { link.click(); return true; }
}
return null;
"""
DIALOG_TEXT_JS = """return Array.from(document.querySelectorAll("[role=dialog]")).map(d => d.innerText).join("\\n") || null;"""


def check_demo_report(browser: Browser, base: str) -> None:
    url = f"{base}/assets/{RULES}?view=events"
    browser.get(url)
    wait_for(f"the demo_report metadata on {url}", lambda: browser.js(SHOW_REPORT_JS), PAGE_TIMEOUT, 0.25)
    last = {"text": ""}

    def report_shown() -> str | None:
        last["text"] = browser.js(DIALOG_TEXT_JS) or ""
        return last["text"] if "Routing demo" in last["text"] else None

    try:
        text = wait_for("the demo report in its dialog", report_shown, 20, 0.25)
    except CheckFailed as exc:
        raise CheckFailed(f"{exc}; the dialog shows {last['text'][:300]!r}") from None
    heading = next(line for line in text.splitlines() if "Routing demo" in line)
    log(f"ok   {url}\n         the demo_report observation opens the report: '{heading.strip()}'")


def location_address(assets: dict[str, tuple[str, str, str]]) -> str:
    """How the UI's URLs name the code location of the rules: ``LOCATION`` for Dagster's implicit
    ``__repository__`` (a bare ``Definitions``), else ``REPO@LOCATION``."""
    _group, repo, location = assets[RULES]
    return location if repo == "__repository__" else f"{repo}@{location}"


JOB_RUNS_QUERY = """query ($job: String!) {
  runsOrError(filter: {pipelineName: $job}, limit: 50) { __typename ... on Runs { results { runId status } } }
}"""
PAGE_TEXT_JS = """return document.body ? document.body.innerText : "";"""


def check_job_runs(browser: Browser, base: str, assets: dict[str, tuple[str, str, str]], screenshot: Path) -> None:
    """The job page of the nightly job lists the runs `routing learn` made (the demo learned each
    night): a run recorded outside the UI must not be invisible from the job it ran."""
    data = http_json(f"{base}/graphql", {"query": JOB_RUNS_QUERY, "variables": {"job": JOB}})
    runs = data["data"]["runsOrError"].get("results") or []
    if not runs:
        raise CheckFailed(f"the instance has no run of {JOB}: `routing demo` learned each night with `routing learn`,"
                          " so its runs should be recorded under that job")
    wanted = [r["runId"][:8] for r in runs]  # the job page shows a run by the first 8 characters of its id
    url = f"{base}/locations/{urllib.parse.quote(location_address(assets), safe='@:')}/jobs/{JOB}/runs"
    browser.get(url)
    last = {"text": ""}

    def listed() -> bool | None:
        last["text"] = browser.js(PAGE_TEXT_JS) or ""
        return True if all(run_id in last["text"] for run_id in wanted) else None

    try:
        wait_for(f"the job page to list the {len(wanted)} runs of {JOB}", listed, PAGE_TIMEOUT, 0.5)
    except CheckFailed as exc:
        shown = [run_id for run_id in wanted if run_id in last["text"]]
        empty = " ('No runs found')" if "No runs found" in last["text"] else ""
        raise CheckFailed(f"{exc}: {url} lists {len(shown)} of the {len(wanted)} runs `routing learn` recorded"
                          f" ({', '.join(wanted)}){empty}") from None
    time.sleep(0.5)
    log(f"ok   {url}\n         lists all {len(wanted)} runs of {JOB} made by `routing learn`: {', '.join(wanted)}")
    save_screenshot(browser, screenshot, f"the job page of {JOB}")


RULES_EVENTS_QUERY = """query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) { __typename ... on Asset { assetMaterializations(limit: 1) {
    runId timestamp metadataEntries { label __typename ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } } }
  runsOrError(limit: 20) { __typename ... on Runs { results { runId status jobName } } }
}"""
RUN_QUERY = """query ($id: ID!) {
  runOrError(runId: $id) { __typename ... on Run { runId status jobName eventConnection { events { __typename
    ... on ExecutionStepFailureEvent { stepKey error { message cause { message cause { message } } } }
    ... on RunFailureEvent { message } } } } }
}"""
#: Click the asset page's Materialize button, or the launch button of a dialog it opened (run
#: config, partitions); report the toast that names the launched run.
MATERIALIZE_JS = """
const toast = Array.from(document.querySelectorAll("[class*=Toast], [class*=toast]")).map(t => t.innerText)
  .find(t => /Launched run/.test(t));
if (toast) return {toast: toast};
const clickable = (root, names) => Array.from(root.querySelectorAll("button"))
  .find(b => names.includes(b.innerText.trim()) && !b.disabled);
const dialog = document.querySelector("[role=dialog]");
if (dialog) {
  const launch = clickable(dialog, ["Materialize", "Launch run", "Launch 1 run", "Materialize selected"]);
  if (launch && arguments[0]) { launch.click(); return {clicked: "dialog: " + launch.innerText.trim()}; }
  return {dialog: dialog.innerText.slice(0, 400)};
}
const button = clickable(document, ["Materialize"]);
if (button && arguments[1]) { button.click(); return {clicked: "Materialize"}; }
return null;
"""
METADATA_ROW_JS = """
for (const row of document.querySelectorAll("tr")) {
  const cells = row.querySelectorAll("td");
  if (cells.length > 1 && cells[0].innerText.trim() === arguments[0]) return cells[1].innerText.trim();
}
return null;
"""


def published_version(home: Path) -> int | None:
    """The rule set in force, as `routing rules --json` reports it: what the UI must show."""
    argv = [*routing_command(), "rules", "--home", str(home), "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise CheckFailed(f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr[-500:]}")
    version = json.loads(done.stdout).get("rule_set_version")
    return int(version) if version is not None else None


def run_failure(base: str, run_id: str) -> str:
    """Why a run failed: each failed step with the innermost cause (the exception the asset raised)."""
    data = http_json(f"{base}/graphql", {"query": RUN_QUERY, "variables": {"id": run_id}})["data"]["runOrError"]
    reasons = []
    for event in data.get("eventConnection", {}).get("events", []):
        if event["__typename"] == "ExecutionStepFailureEvent":
            error = event["error"] or {}
            while error.get("cause"):
                error = error["cause"]
            reasons.append(f"step {event['stepKey']}: {(error.get('message') or '').strip()}")
        elif event["__typename"] == "RunFailureEvent" and not reasons:
            reasons.append(event.get("message") or "")
    return "; ".join(reasons)[:800] or "no failure event recorded"


def check_materialize_from_ui(browser: Browser, base: str, home: Path, screenshot: Path) -> None:
    """Click **Materialize** on the rules asset as an analyst would: the run must succeed, publish
    the next rule set, and the asset's newest event must carry that version in its metadata."""
    def state() -> dict[str, Any]:
        return dict(http_json(f"{base}/graphql", {"query": RULES_EVENTS_QUERY, "variables": {"path": [RULES]}})["data"])

    before = state()
    runs_before = {r["runId"] for r in before["runsOrError"]["results"]}
    version_before = published_version(home)
    url = f"{base}/assets/{RULES}"
    browser.get(url)
    clicked: list[str] = []
    seen: dict[str, Any] = {}

    def launched() -> str | None:
        # Click Materialize once, then the dialog's launch button (if one opens) once.
        result = browser.js(MATERIALIZE_JS, len(clicked) == 1, not clicked) or {}
        seen.update(result)
        if "clicked" in result:
            clicked.append(result["clicked"])
            return None
        return result.get("toast")

    try:
        toast = wait_for(f"{url} to launch a run from its Materialize button", launched, PAGE_TIMEOUT, 0.5)
    except CheckFailed as exc:
        raise CheckFailed(f"{exc}; clicked: {clicked or 'nothing (no enabled Materialize button)'}"
                          + (f"; the dialog says {seen['dialog']!r}" if "dialog" in seen else "")) from None
    prefix = toast.split("Launched run", 1)[1].split()[0].strip() if "Launched run" in toast else ""

    def new_run() -> dict[str, Any] | None:
        return next((r for r in state()["runsOrError"]["results"]
                     if r["runId"] not in runs_before and r["runId"].startswith(prefix)), None)

    run = wait_for(f"run {prefix} in the instance", new_run, 30, 0.5)

    def finished() -> dict[str, Any] | None:
        current = next(r for r in state()["runsOrError"]["results"] if r["runId"] == run["runId"])
        return current if current["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

    started = time.monotonic()
    ended = wait_for(f"run {prefix} ({run['jobName']}) launched from the UI to finish", finished, RUN_TIMEOUT, 1.0)
    if ended["status"] != "SUCCESS":
        raise CheckFailed(f"clicked {' then '.join(clicked)} on {url}: run {run['runId']} ended {ended['status']}:"
                          f" {run_failure(base, run['runId'])}")
    log(f"ok   {url}: clicked {' then '.join(clicked)}, launched run {prefix}: SUCCESS after"
        f" {time.monotonic() - started:.1f}s")

    version = published_version(home)
    if version is None or (version_before is not None and version <= version_before):
        raise CheckFailed(f"run {prefix} succeeded but published no new rule set: v{version_before} before, v{version} after")
    newest = (state()["assetOrError"].get("assetMaterializations") or [None])[0]
    if not newest or newest["runId"] != run["runId"]:
        raise CheckFailed(f"the newest materialization of {RULES} is from run {newest and newest['runId']}, not {run['runId']}")
    labels = {e["label"]: e.get("intValue", e.get("text")) for e in newest["metadataEntries"]}
    if labels.get("rule_set_version") != version:
        raise CheckFailed(f"the new event's rule_set_version is {labels.get('rule_set_version')!r}, but"
                          f" `routing rules` serves v{version} (metadata: {sorted(labels)})")
    events_url = f"{base}/assets/{RULES}?view=events"
    browser.get(events_url)
    last: dict[str, Any] = {"value": None}

    def shown() -> str | None:
        last["value"] = browser.js(METADATA_ROW_JS, "rule_set_version")
        return last["value"] if last["value"] == str(version) else None

    try:
        wait_for(f"{events_url} to show rule_set_version {version} on the newest event", shown, PAGE_TIMEOUT, 0.5)
    except CheckFailed as exc:
        raise CheckFailed(f"{exc} (shows {last['value']!r})") from None
    # Each version's gate result: the event's `gate` row is what `routing history` recorded for it.
    argv = [*routing_command(), "history", "--home", str(home), "--json"]
    recorded = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout)
    gate = next((e["gate"] or {}).get("status") for e in recorded if e["rule_set_version"] == version)
    if labels.get("gate") != gate:
        raise CheckFailed(f"the new event's gate is {labels.get('gate')!r}, but `routing history` records {gate!r} for v{version}")
    try:
        wait_for(f"{events_url} to show gate {gate} on the newest event",
                 lambda: browser.js(METADATA_ROW_JS, "gate") == gate or None, PAGE_TIMEOUT, 0.5)
    except CheckFailed as exc:
        raise CheckFailed(f"{exc} (shows {browser.js(METADATA_ROW_JS, 'gate')!r})") from None
    time.sleep(0.5)
    log(f"ok   {events_url}\n         the new event (run {prefix}) shows rule_set_version {version} (was v{version_before})"
        f" and gate {gate}; as_of {labels.get('as_of')}")
    save_screenshot(browser, screenshot, f"the new event of {RULES}")


def run_checks(screenshots: Path, chromium: str, chromedriver: str, workdir: Path) -> None:
    home = workdir / "home"
    log(f"demo: routing demo --days 2 --requests-per-day 200 --home {home}")
    make_demo_home(home)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ui_log = open(workdir / "ui.log", "wb")  # noqa: SIM115 (closed below)
    argv = [*routing_command(), "ui", "--home", str(home), "--port", str(port)]
    log(f"start: {' '.join(argv)}")
    ui = subprocess.Popen(argv, stdout=ui_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def server_info() -> dict[str, Any] | None:
            if ui.poll() is not None:
                raise CheckFailed(f"`routing ui` exited early with {ui.returncode}")
            return dict(http_json(f"{base}/server_info", timeout=5))

        started = time.monotonic()
        info = wait_for(f"{base}/server_info", server_info, UI_START_TIMEOUT)
        log(f"ok   {base}/server_info answered after {time.monotonic() - started:.1f}s: dagster {info.get('dagster_version')}")
        assets = check_workspace(base)

        browser = Browser(chromium, chromedriver, workdir)
        log(f"browser: headless Chromium {browser.version} via chromedriver, viewport {VIEWPORT[0]}x{VIEWPORT[1]}")
        try:
            # Same origin first: dismiss Dagster's "join the community" dialog and collapse the
            # left navigation before any page is drawn (both live in localStorage).
            browser.get(f"{base}/server_info")
            browser.js("localStorage.setItem('communityNux', JSON.stringify('1'));"
                       "localStorage.setItem('dagster-nav-collapsed', 'true');")
            # The demo report first: it is the newest event of the rules until Materialize adds one.
            page_checks: list[tuple[str, Callable[[], object]]] = [
                ("the asset graph", lambda: check_asset_graph(browser, base, assets, screenshots / GRAPH_PNG)),
                (f"the upstream graph of {RULES}", lambda: check_upstream(browser, base, assets)),
                ("the demo report", lambda: check_demo_report(browser, base)),
                (f"the job page of {JOB}", lambda: check_job_runs(browser, base, assets, screenshots / JOB_RUNS_PNG)),
                (f"Materialize on {RULES}", lambda: check_materialize_from_ui(browser, base, home, screenshots / MATERIALIZED_PNG)),
            ]
            failures = []
            for name, check in page_checks:
                try:
                    check()
                except CheckFailed as exc:
                    log(f"FAIL {name}: {exc}")
                    failures.append(f"{name}: {exc}")
        finally:
            browser.close()
        stop_ui(ui)
        if failures:
            raise CheckFailed(f"{len(failures)} of {len(page_checks)} page checks failed:\n  " + "\n  ".join(failures))
    except BaseException:
        tail = (workdir / "ui.log").read_bytes()[-3000:].decode(errors="replace")
        print(f"--- routing ui output (last 3000 bytes) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        if ui.poll() is None:
            ui.send_signal(signal.SIGTERM)
            try:
                ui.wait(timeout=30)
            except subprocess.TimeoutExpired:
                ui.kill()
        left = kill_session(ui.pid)
        ui_log.close()
        if left:
            raise CheckFailed("processes of `routing ui` were still running and had to be killed:\n  "
                              + "\n  ".join(f"{pid}: {cmd[:160]}" for pid, cmd in sorted(left.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    default = DEFAULT_SCREENSHOTS.relative_to(PROJECT_ROOT)
    parser.add_argument("--screenshots", type=Path, default=DEFAULT_SCREENSHOTS,
                        help=f"the folder to write {GRAPH_PNG}, {JOB_RUNS_PNG} and {MATERIALIZED_PNG} into (default: {default})")
    args = parser.parse_args(argv)
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        print("FAIL: needs `chromium` and `chromedriver` on PATH (Debian: apt-get install chromium chromium-driver)",
              file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="check-ui-") as workdir:
            run_checks(args.screenshots.resolve(), chromium, chromedriver, Path(workdir))
    except CheckFailed as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    log("PASS: routing ui serves the asset graph, the job's runs and the demo report, materializes the rules,"
        " the schedule runs, and it stops cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
