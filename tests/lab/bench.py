#!/usr/bin/env python3
"""pictl's benchmark on the lab (run through tests/lab/bench.sh, as root).

For each node count N: a fresh lab of N nodes, a first bootstrap (the
controller's artifact cache warm, as on any run after the first), then
no-op re-runs at each concurrency, and `pictl status`. Per run: wall time,
the controller's CPU and peak RSS (its own rusage), the nodes' CPU (the
lab's per-node cgroups outside K3s's and the agent's services, minus what
they burn idle over the same time: see SERVICES; for a bootstrap also all
of it),
and each phase's time (from pictl's plain progress lines). Figures, not
assertions: the machine is shared and noisy, so `uptime` is recorded beside
every node count. Results: a table on stdout and JSON in --json FILE.
"""

import argparse
import glob
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAB = os.path.join(ROOT, "tests", "lab", "lab")
PHASE_DONE = re.compile(r"^(\S+)\s+(?:\d+ nodes?|cluster)\s+done ([0-9.]+) s")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def lab(args, lab_id, check=True, quiet=True):
    out = subprocess.run(
        [LAB, "--id", str(lab_id)] + args,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        check=False,
    )
    if check and out.returncode != 0:
        raise SystemExit(f"lab {' '.join(args)} failed:\n{out.stderr}")
    return out


def cgroup_root(lab_id):
    for r in (f"/sys/fs/cgroup/unified/pictl-lab{lab_id}", f"/sys/fs/cgroup/pictl-lab{lab_id}"):
        if os.path.isdir(r):
            return r
    raise SystemExit(f"no cgroup for lab {lab_id}: is it up?")


# What a run costs the nodes, from their cgroups, in three parts:
# - the logins (sshd's ssh.service, and the user slice less the user's
#   systemd manager): sudo, the facts script and what it starts, all of
#   pictl's commands. Idle, these use nothing: counted as they are.
# - the nodes' long-running services (SERVICES): their own idle work (the
#   simulated K3s, the health agent) is large and uneven next to a no-op's
#   share, and on a saturated machine delayed rather than skipped, so an
#   idle rate subtracted from it blurs the figure (at 50 nodes, below
#   zero). Reported apart, not in the node CPU of a run.
# - everything else (PID 1, logind, dbus, journald, the user managers):
#   counted less its idle rate, measured once the user managers of the
#   previous logins have stopped (USER_STOP_S).
SERVICES = ("k3s.service", "k3s-agent.service", "pictl-agent.service")
# How long after a run its node-side work is still counted (see measure).
SETTLE_S = 1.5
# systemd stops a user's manager 10 s after the last session (UserStopDelaySec).
USER_STOP_S = 12


def read_usage(path):
    try:
        with open(os.path.join(path, "cpu.stat")) as f:
            for line in f:
                k, v = line.split()
                if k == "usage_usec":
                    return int(v)
    except FileNotFoundError:
        pass
    return 0


def logins_usec(payload):
    """ssh.service and the user slices, less each user's systemd manager."""
    used = read_usage(os.path.join(payload, "system.slice", "ssh.service"))
    users = os.path.join(payload, "user.slice")
    used += read_usage(users)
    if os.path.isdir(users):
        for u in os.listdir(users):
            for m in glob.glob(os.path.join(users, u, "user@*.service")):
                used -= read_usage(m)
    return used


def nodes_cpu_usec(lab_id):
    """CPU time used so far by the lab's nodes: (all, services, logins)."""
    root = cgroup_root(lab_id)
    total = services = logins = 0
    for d in os.listdir(root):
        if not d.startswith("node"):
            continue
        payload = os.path.join(root, d, "payload")
        total += read_usage(os.path.join(root, d))
        for svc in SERVICES:
            services += read_usage(os.path.join(payload, "system.slice", svc))
        logins += logins_usec(payload)
    return total, services, logins


def rest(u):
    """Everything but the services and the logins."""
    return u[0] - u[1] - u[2]


def idle_rate(lab_id, seconds=2.0):
    """The nodes' CPU per second outside their services and logins while
    pictl does nothing."""
    a = nodes_cpu_usec(lab_id)
    time.sleep(seconds)
    b = nodes_cpu_usec(lab_id)
    return (rest(b) - rest(a)) / seconds


def measure(cmd, lab_id, env):
    """Runs cmd; returns its figures."""
    a = nodes_cpu_usec(lab_id)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = p.communicate()
    wall = time.monotonic() - t0
    # A node's share of the run ends after pictl's: closing the session
    # (PAM, logind, the session scope) runs once the connection is gone,
    # later the busier the machine. Read the counters once that settled.
    time.sleep(SETTLE_S)
    b = nodes_cpu_usec(lab_id)
    # The child is reaped: its rusage is in RUSAGE_CHILDREN; take the delta.
    delta = tuple(y - x for x, y in zip(a, b))
    return wall, out, err, p.returncode, delta, wall + SETTLE_S


def one_run(kind, cmd, lab_id, n, idle, env):
    # The controller's own CPU and peak RSS, from its rusage.
    # (rusage of reaped children, taken around this one command: µs, where
    # /usr/bin/time rounds to 10 ms; the peak RSS is /usr/bin/time's.)
    timed = ["/usr/bin/time", "-f", "pictl-bench-rusage=%U %S %M"] + cmd
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, out, err, rc, used, span = measure(timed, lab_id, env)
    node_usec, service_usec, login_usec = used
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    err_text = err.decode(errors="replace")
    rss = 0
    phases = {}
    for line in err_text.splitlines():
        if line.startswith("pictl-bench-rusage="):
            rss = int(line.split("=", 1)[1].split()[2])
        m = PHASE_DONE.match(line)
        if m:
            phases[m.group(1)] = float(m.group(2))
    changed = None
    if kind != "status":
        try:
            report = json.loads(out)
            changed = sum(
                1 for nd in report["nodes"] for s in nd["steps"] if s["status"] == "changed"
            )
        except (ValueError, KeyError):
            pass
    node_net = login_usec + max(0.0, rest(used) - idle * span)
    node_lists = err_text.count("LIST nodes")
    node_gets = err_text.count("GET node")
    r = {
        "kind": kind,
        "nodes": n,
        "exit": rc,
        "wall_s": round(wall, 3),
        "controller_cpu_s": round(cpu, 3),
        "controller_cpu_ms_per_node": round(cpu * 1000 / n, 1),
        "controller_peak_rss_kib": rss,
        "node_cpu_s": round(node_usec / 1e6, 3),
        "node_services_cpu_s": round(service_usec / 1e6, 3),
        "node_logins_cpu_s": round(login_usec / 1e6, 3),
        "node_cpu_ms_per_node": round(node_net / 1000 / n, 1),
        "node_idle_cpu_ms_per_s": round(idle / 1000, 1),
        "phases_s": phases,
        "changed_steps": changed,
        "api_node_lists": node_lists,
        "api_node_gets": node_gets,
    }
    if rc not in (0,):
        tail = "\n".join(err_text.splitlines()[-15:])
        log(f"  {kind}: exit {rc}\n{tail}")
    return r


def uptime():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def bench_n(a, n, pictl, env):
    lab_id = a.id
    results = []
    log(f"== {n} nodes: fresh lab (load {uptime()})")
    lab(["down"], lab_id, check=False)
    t0 = time.monotonic()
    up = ["up", str(n)] + (["--pi", "node3"] if a.pi and n >= 3 else [])
    lab(up, lab_id, quiet=False)
    up_s = time.monotonic() - t0
    state = lab_state(lab_id)
    inv = os.path.join(state, "inventory.toml")
    subprocess.run(["rm", "-rf", os.path.join(state, "state")], check=True)
    base = [pictl, "apply", "-i", inv, "--output", "json"]
    cache = env["PICTL_CACHE_DIR"]
    if not a.no_bootstrap and not (os.path.isdir(cache) and os.listdir(cache)):
        # A bootstrap is measured with the artifacts cached on the
        # controller (every run after a user's first): fill the cache once.
        log("  warming the controller's artifact cache (not measured)")
        subprocess.run(base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        lab(["down"], lab_id, check=False)
        lab(up, lab_id, quiet=False)
        subprocess.run(["rm", "-rf", os.path.join(state, "state")], check=True)
    if not a.no_bootstrap:
        idle = idle_rate(lab_id, 1.0)
        c = a.concurrency[0]
        log(f"  first bootstrap, --concurrency {c}")
        r = one_run("bootstrap", base + ["--concurrency", str(c)], lab_id, n, idle, env)
        r["concurrency"] = c
        results.append(r)
    else:
        subprocess.run(base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    # The bootstrap's logins leave user managers that stop a little later:
    # that is not idle work.
    time.sleep(USER_STOP_S)
    idle = idle_rate(lab_id)
    for c in a.concurrency:
        for i in range(a.runs):
            r = one_run("no-op", base + ["--concurrency", str(c)], lab_id, n, idle, env)
            r["concurrency"] = c
            r["run"] = i + 1
            results.append(r)
            log(f"  no-op --concurrency {c} run {i + 1}: {r['wall_s']} s, changed {r['changed_steps']}, "
                f"Node LISTs {r['api_node_lists']}, GETs {r['api_node_gets']}")
    r = one_run("status", [pictl, "status", "-i", inv, "--output", "json"], lab_id, n, idle, env)
    r["concurrency"] = None
    results.append(r)
    load = uptime()
    for r in results:
        r["load_after"] = load
        r["lab_up_s"] = round(up_s, 1)
    return results


def lab_state(lab_id):
    out = lab(["env"], lab_id).stdout
    for line in out.splitlines():
        if line.startswith("LAB_DIR="):
            return line.split("=", 1)[1].strip("'\"").replace("\\ ", " ")
    raise SystemExit("lab env: no LAB_DIR")


def median(xs):
    return statistics.median(xs) if xs else None


def table(results):
    rows = []
    head = (
        "| nodes | conc | bootstrap s | bootstrap node CPU s/node (all) | no-op s (median, min-max)"
        " | no-op ctrl CPU ms/node | no-op node CPU ms/node | status s | ctrl peak RSS MiB"
        " | no-op phases (median s) |"
    )
    rows.append(head)
    rows.append("|" + "---|" * 10)
    keys = sorted({(r["nodes"], r["concurrency"]) for r in results if r["kind"] == "no-op"})
    for n, c in keys:
        noop = [r for r in results if r["kind"] == "no-op" and r["nodes"] == n and r["concurrency"] == c]
        boot = [r for r in results if r["kind"] == "bootstrap" and r["nodes"] == n and r["concurrency"] == c]
        status = [r for r in results if r["kind"] == "status" and r["nodes"] == n]
        walls = [r["wall_s"] for r in noop]
        rss = max(r["controller_peak_rss_kib"] for r in noop + boot + status) / 1024
        phases = {}
        for r in noop:
            for k, v in r["phases_s"].items():
                phases.setdefault(k, []).append(v)
        ph = ", ".join(f"{k} {median(v):.2f}" for k, v in phases.items())
        cells = [
            str(n),
            str(c),
            f"{boot[0]['wall_s']:.2f}" if boot else "-",
            f"{boot[0]['node_cpu_s'] / n:.2f}" if boot else "-",
            f"{median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f})",
            f"{median([r['controller_cpu_ms_per_node'] for r in noop]):.1f}",
            f"{median([r['node_cpu_ms_per_node'] for r in noop]):.1f}",
            f"{status[0]['wall_s']:.2f}" if status else "-",
            f"{rss:.0f}",
            ph,
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratios(results):
    """The largest no-op over the 3-node no-op of the same run, per concurrency."""
    lines = []
    for c in sorted({r["concurrency"] for r in results if r["kind"] == "no-op"}):
        by_n = {}
        for r in results:
            if r["kind"] == "no-op" and r["concurrency"] == c:
                by_n.setdefault(r["nodes"], []).append(r["wall_s"])
        if 3 in by_n and len(by_n) > 1:
            big = max(by_n)
            lines.append(
                f"no-op {big} nodes / 3 nodes at --concurrency {c}:"
                f" {median(by_n[big]) / median(by_n[3]):.2f}x"
            )
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--id", type=int, default=int(os.environ.get("PICTL_LAB_ID", "4")))
    p.add_argument("--nodes", default="3,10", help="node counts, e.g. 3,10,25,50 (default 3,10)")
    p.add_argument("--concurrency", default="8,32", help="--concurrency values for no-ops (default 8,32); the first is used for bootstraps")
    p.add_argument("--runs", type=int, default=3, help="no-op runs per concurrency (default 3)")
    p.add_argument("--pi", action="store_true", help="node3 is a Raspberry Pi (one reboot in the bootstrap)")
    p.add_argument("--no-bootstrap", action="store_true", help="skip the measured first bootstrap")
    p.add_argument("--pictl", required=True)
    p.add_argument("--json", required=True, help="write all results here")
    a = p.parse_args()
    a.nodes = [int(x) for x in a.nodes.replace(" ", ",").split(",") if x]
    a.concurrency = [int(x) for x in a.concurrency.replace(" ", ",").split(",") if x]
    env = dict(os.environ)
    # pictl's Node requests, counted from its debug lines (cluster::nodes
    # logs each LIST and GET); every other target stays at warn.
    env["RUST_LOG"] = "warn,pictl::cluster::nodes=debug"
    results = []
    started = {"uptime_before": uptime(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        for n in a.nodes:
            results += bench_n(a, n, a.pictl, env)
    finally:
        lab(["down"], a.id, check=False)
    doc = {
        "pictl": a.pictl,
        "cpus": os.cpu_count(),
        "started": started,
        "uptime_after": uptime(),
        "options": {k: v for k, v in vars(a).items() if k != "json"},
        "results": results,
    }
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"pictl {a.pictl}; {os.cpu_count()} CPUs; load before {started['uptime_before']}, after {doc['uptime_after']}")
    print(table(results))
    for line in ratios(results):
        print(line)
    print(f"JSON: {a.json}")
    failed = [r for r in results if r["exit"] != 0]
    if failed:
        # A figure from a run that failed is not a figure: say so, and fail.
        for r in failed:
            print(f"FAILED: {r['kind']} of {r['nodes']} nodes (--concurrency {r['concurrency']}) exited {r['exit']}; its output is in the log above")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
