"""A fleet on one S3 hub: what `routing sync` costs the hosts, how fast it ships, how soon a
publication reaches every host.

Run with ``python benchmarks/bench_fleet.py [--hosts 8] [--seconds 10] [--rounds 2]
[--ship-requests 20000] [--quick] [--json out.json]`` (about 2 minutes at full size). ``--quick``
(2 hosts, 2 s, one round) only proves it still runs: ``make test``.

Targets (issue 9): with ``routing sync --every 1`` running beside each of 8 host processes, their
``select_model`` p50 and p99 stay within 10% of the same hosts without sync.

What happens (a real SeaweedFS S3 server on 127.0.0.1, started here: ``tests/servers.py``):

1. A learner and ``--hosts`` host homes are tied to one new ``s3://`` hub (``routing init --hub``),
   all with the registry of the shipped ``stationary`` scenario.
2. Selection, without and with sync, ``--rounds`` times alternately: each host runs as its own
   process (``python -m routing_pipelines.simulation.fleet select-loop``), selecting and recording
   ``--rate`` requests a second (an agent waits seconds on each LLM call; 0 runs flat out, which on
   2 cores measures CPU sharing, not sync) for ``--seconds``; in the "with sync" phase a ``routing sync --every 1``
   process runs beside each host. Every ``select_model`` call is timed in its host; the figures
   are p50 and p99 over all calls of a phase, and their ratio with sync over without (the median
   of the rounds' ratios: these machines are noisy, so a ratio inside one run is what counts).
3. Shipping: one host gets ``--ship-requests`` decisions and outcomes (``... fleet traffic``), then
   one ``routing sync`` ships them: rows shipped over the command's wall clock (a new process,
   so its start-up is inside the figure).
4. Publication to serving: while every host selects (20 requests/s) with its sync running, until
   it serves the new version, the learner runs
   ``routing learn`` on what the hosts shipped and puts a new rule set on the hub. This process
   polls ``rules/current.json`` every 50 ms; each host records the wall-clock time its router
   first served the new version. The figure is, per host, that time minus the time the pointer
   appeared (median and max over hosts): sync's period (1 s) plus the router's reload (within
   a second) bound it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import SeaweedServer  # noqa: E402

ROUTING = [sys.executable, "-m", "routing_runtime.cli"]
FLEET = [sys.executable, "-m", "routing_pipelines.simulation.fleet"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bench:
    def __init__(self, work: Path, server: SeaweedServer, hosts: int) -> None:
        self.work = work
        self.env = {**os.environ, **server.env}
        self.hub = server.new_bucket_url()
        from routing_pipelines.simulation.scenarios import load_scenario
        from routing_runtime.hub import Hub

        registry = work / "registry.toml"
        registry.write_text(load_scenario("stationary").registry.to_toml())
        self.learner = work / "learner"
        self.hosts = [work / f"host-{i}" for i in range(hosts)]
        for home in [self.learner, *self.hosts]:
            self.run([*ROUTING, "init", "--home", str(home), "--registry", str(registry), "--hub", self.hub])
        os.environ.update(server.env)
        self.hub_client = Hub.parse(self.hub)

    def run(self, command: list[str]) -> subprocess.CompletedProcess:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[2:])} exited {done.returncode}: {done.stderr[-1500:]}")
        return done

    def select_phase(self, seconds: float, *, with_sync: bool, label: str, rate: float,
                     stop_at_version: int | None = None, ship_every: float | None = None) -> list[dict]:
        ship = ["--ship-every", str(ship_every)] if ship_every else []
        syncs = [
            subprocess.Popen([*ROUTING, "sync", "--home", str(h), "--every", "1", *ship, "--json"], env=self.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for h in self.hosts
        ] if with_sync else []
        time.sleep(1.5 if with_sync else 0)  # every sync process started and past its first sync
        outs = [self.work / f"{label}-{i}.json" for i in range(len(self.hosts))]
        loops = [
            subprocess.Popen([*FLEET, "select-loop", "--home", str(h), "--seconds", str(seconds), "--seed", str(i), "--out", str(o),
                              "--rate", str(rate), *(["--stop-at-version", str(stop_at_version)] if stop_at_version else [])],
                             env=self.env)
            for i, (h, o) in enumerate(zip(self.hosts, outs))
        ]
        for loop in loops:
            if loop.wait(timeout=seconds + 120) != 0:
                raise RuntimeError(f"a host's select loop exited {loop.returncode}")
        for sync in syncs:
            sync.send_signal(signal.SIGTERM)
        for sync in syncs:
            sync.wait(timeout=60)
        return [json.loads(o.read_text()) for o in outs]

    def current_version(self) -> int | None:
        pointer = self.hub_client.get_json("rules/current.json")
        return pointer["version"] if pointer else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each selection phase (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of without/with sync (default 2)")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="requests per second each host sends (default 200; 0: as fast as it can)")
    parser.add_argument("--ship-requests", type=int, default=20_000, help="requests one host ships in one sync (default 20000)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="2 hosts, 2 s, 1 round, 500 requests: proves it runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.seconds, args.rounds, args.ship_requests = 2, 2.0, 1, 500

    server = SeaweedServer()
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        server.start()
        started = time.perf_counter()
        bench = Bench(work, server, args.hosts)
        print(f"hub {bench.hub}: 1 learner and {args.hosts} hosts tied in {time.perf_counter() - started:.1f}s", file=sys.stderr)

        modes = {"without sync": (False, None), "with sync": (True, None), "with sync shipping every 1 s": (True, 1.0)}
        phases: dict[str, list[float]] = {name: [] for name in modes}
        ratios: dict[str, list[float]] = {f"{q} {name}": [] for name in list(modes)[1:] for q in ("p50", "p99")}
        for round_ in range(args.rounds):
            figures = {}
            for index, (name, (with_sync, ship_every)) in enumerate(modes.items()):
                results = bench.select_phase(args.seconds, with_sync=with_sync, label=f"r{round_}-{index}", rate=args.rate,
                                             ship_every=ship_every)
                calls = [us for r in results for us in r["select_us"]]
                phases[name] += calls
                figures[name] = (percentile(calls, 0.5), percentile(calls, 0.99), len(calls))
                print(f"round {round_ + 1} {name}: p50 {figures[name][0]:.1f} µs, p99 {figures[name][1]:.1f} µs over"
                      f" {len(calls)} calls", file=sys.stderr)
            for name in list(modes)[1:]:
                ratios[f"p50 {name}"].append(figures[name][0] / figures["without sync"][0])
                ratios[f"p99 {name}"].append(figures[name][1] / figures["without sync"][1])

        # Shipping: one host's backlog in one sync.
        shipper = bench.hosts[0]
        bench.run([*FLEET, "traffic", "--home", str(shipper), "--day", time.strftime("%Y-%m-%d", time.gmtime()),
                   "--requests", str(args.ship_requests), "--seed", "99"])
        began = time.perf_counter()
        shipped = json.loads(bench.run([*ROUTING, "sync", "--home", str(shipper), "--json"]).stdout)["shipped"]
        ship_seconds = time.perf_counter() - began
        ship_rows = sum(shipped.values())

        # Publication to serving: hosts select with their syncs running; the learner publishes.
        # The learner's next version: above its newest (the hub has none before its first learn).
        expected = json.loads(bench.run([*ROUTING, "rules", "--home", str(bench.learner), "--json"]).stdout)["rule_set_version"] + 1
        appeared: list[float] = []

        def watch() -> None:
            while not appeared:
                if (bench.current_version() or 0) >= expected:
                    appeared.append(time.time())
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        holder: dict = {}
        # Each host selects (at a light 20 requests/s: the figure is the delay, and the learner
        # must not starve on 2 cores) until it serves the learner's new version (10 minutes at most).
        selecting = threading.Thread(target=lambda: holder.setdefault("results", bench.select_phase(
            600, with_sync=True, label="publication", rate=min(args.rate, 20.0), stop_at_version=expected)))
        selecting.start()
        time.sleep(3)
        watcher.start()
        learn_began = time.perf_counter()
        learned = json.loads(bench.run([*ROUTING, "learn", "--home", str(bench.learner), "--as-of",
                                         time.strftime("%Y-%m-%d", time.gmtime()), "--json"]).stdout)
        learn_seconds = time.perf_counter() - learn_began
        selecting.join()
        new_version = learned["rule_set_version"]
        delays = []
        for result in holder.get("results", []):
            seen = [at for version, at in result["versions"] if version == new_version]
            delays.append(seen[0] - appeared[0] if seen and appeared else float("nan"))
        reached = [d for d in delays if d == d]

        result = {
            "hosts": args.hosts, "seconds": args.seconds, "rounds": args.rounds, "rate_per_host": args.rate,
            "select_us": {name: {"p50": percentile(calls, 0.5), "p99": percentile(calls, 0.99), "calls": len(calls)}
                          for name, calls in phases.items()},
            "ratio_over_without_sync": {k: statistics.median(v) for k, v in ratios.items()},
            "ship": {"rows": ship_rows, "seconds": ship_seconds, "rows_per_second": ship_rows / ship_seconds},
            "publication": {"version": new_version, "learn_status": learned["status"], "learn_seconds": learn_seconds,
                            "hosts_serving": len(reached),
                            "delay_s_median": statistics.median(reached) if reached else None,
                            "delay_s_max": max(reached) if reached else None},
        }
        ratio = result["ratio_over_without_sync"]
        print(f"\n## {args.hosts} host processes selecting {args.rate:g} requests/s each, `routing sync --every 1` beside each or not\n")
        print("| phase | select p50 | select p99 | calls timed | p50 ratio | p99 ratio | target |")
        print("|---|---|---|---|---|---|---|")
        for name, calls in phases.items():
            ratios_text = "| | |" if name == "without sync" else f"| {ratio['p50 ' + name]:.3f}× | {ratio['p99 ' + name]:.3f}× | ≤ 1.10× |"
            print(f"| {name} | {percentile(calls, 0.5):.1f} µs | {percentile(calls, 0.99):.1f} µs | {len(calls)} {ratios_text}")
        print("\nRatios are the median over rounds of (phase / without sync) within a round. `--every 1` pulls every second"
              " and ships every 30 s (the default `--ship-every`); the last phase ships every second too.")
        print("\n## Shipping and publication\n")
        print("| figure | value |")
        print("|---|---|")
        rate = f"{ship_rows / ship_seconds:,.0f} rows/s"
        print(f"| one `routing sync` shipping a backlog | {ship_rows} rows in {ship_seconds:.2f} s = {rate} |")
        median_delay = f"{result['publication']['delay_s_median']:.2f} s" if reached else "—"
        max_delay = f"{result['publication']['delay_s_max']:.2f} s" if reached else "—"
        print(f"| publication on the hub (v{new_version}) to serving, median over hosts | {median_delay} |")
        print(f"| the same, slowest host | {max_delay} |")
        rows_learned = sum(t["ingested"] for t in learned["tables"].values())
        print(f"| the learner's `routing learn` meanwhile (all hosts' segments, {rows_learned} rows) | {learn_seconds:.1f} s |")
        print(f"| hosts serving it before their loop ended | {len(reached)} of {args.hosts} |")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
            print(f"\nJSON written to {args.json}")
        return 0 if len(reached) == args.hosts else 1
    finally:
        server.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
