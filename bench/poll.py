"""Poll throughput: N generated feeds × M items on a loopback HTTP server with fixed latency.

A server process (asyncio, HTTP/1.1 keep-alive, ETag → 304) serves ``--feeds`` RSS documents of
``--items`` generated bilingual items each, answering every request after ``--latency`` seconds,
from ``--hosts`` loopback addresses (127.0.0.1 … 127.0.0.N, the feeds spread evenly: outlets, each
under the per-host limit).
Each configuration then runs in its own process, on its own empty SQLite store:

    cycle 1  everything new: fetch, parse, normalise (language detection), classify (shipped
             topics), index (in batches while polling goes on, as run_cycle does); translation
             off (MEDIAMON_TRANSLATION_BACKEND=none)
    cycle 2  steady state: every feed answers 304 Not Modified (conditional GET), nothing parsed

Configurations (``--configs``):

    serial             fetch concurrency 1, parsing in one thread (no process pool)
    concurrent_thread  fetch concurrency ``--concurrency``, parsing in a thread (GIL-bound)
    concurrent         fetch concurrency ``--concurrency``, parsing in the process pool (all cores)

Per cycle: wall seconds, items/s, CPU seconds of the whole process tree (the cycle process, its
parser pool, the fork server), peak RSS of the cycle process and peak summed RSS of the tree
(sampled every 50 ms).  Prints one JSON object.

Usage: python bench/poll.py [--feeds 500] [--items 50] [--latency 0.1] [--hosts 50] [--concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.settings import Settings  # noqa: E402

CONFIGS = {
    "serial": {"fetch_concurrency": 1, "parse_workers": 1},
    "concurrent_thread": {"parse_workers": 1},
    "concurrent": {"parse_workers": 0},
}

RU = ("ракета ракеты ракетами Орешник Искандер Белоруссия Минск Москва учения войска оборона безопасность "
      "НАТО альянс удар беспилотник ядерное оружие испытание пуск размещение ПВО комплекс сегодня вчера "
      "заявил сообщил правительство город области погода экономика рубль нефть выборы суд министр президент "
      "страны жители новый закон компания рынок цены спорт матч команда школа больница дорога").split()
EN = ("missile missiles Oreshnik Iskander Belarus Minsk Moscow drills troops defence security NATO alliance "
      "strike drone nuclear weapons test launch deployed Patriot system today said officials government city "
      "region weather economy oil election court minister president country residents law company market "
      "prices sport match team school hospital road").split()


# --- the feeds ------------------------------------------------------------------------------------

def _fillers(seed: int, alphabet: str, n: int = 3000) -> list[str]:
    """Pseudo-words standing in for the long tail of ordinary news vocabulary."""
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 11))) for _ in range(n)]


FILL_RU = _fillers(1, "абвгдеёжзийклмнопрстуфхцчшщыьэюя")
FILL_EN = _fillers(2, "abcdefghijklmnopqrstuvwxyz")
TOPICAL = 0.05  # share of words from the security vocabulary (the rest: ordinary-news stand-ins)


def feed_body(n: int, items: int) -> bytes:
    """~1.2 KB per item (real feeds in ../shared/feeds: 0.5-3 KB), Russian for even n, English for odd."""
    rng = random.Random(n)
    ru = n % 2 == 0
    vocab, fill = (RU, FILL_RU) if ru else (EN, FILL_EN)

    def words(k: int) -> str:
        return " ".join(rng.choice(vocab) if rng.random() < TOPICAL else rng.choice(fill) for _ in range(k))

    out = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Bench feed {n}</title>'
           f"<link>https://bench{n}.example.org/</link><language>{'ru' if ru else 'en'}</language>"]
    for i in range(items):
        out.append(
            f"<item><title>{words(rng.randint(6, 12)).capitalize()}</title>"
            f"<link>https://bench{n}.example.org/news/{i}?utm_source=rss</link><guid>bench-{n}-{i}</guid>"
            f"<pubDate>Mon, {1 + i % 28:02d} Nov 2026 {i % 24:02d}:{n % 60:02d}:00 GMT</pubDate>"
            f"<category>{rng.choice(vocab)}</category>"
            f"<description>&lt;p&gt;{words(rng.randint(40, 80))}.&lt;/p&gt;&lt;p&gt;{words(rng.randint(10, 30))}"
            f".&lt;/p&gt;</description></item>")
    out.append("</channel></rss>\n")
    return "".join(out).encode("utf-8")


async def serve(args) -> None:
    bodies = {f"/f{n}.xml": feed_body(n, args.items) for n in range(args.feeds)}
    etags = {p: '"' + hashlib.sha1(b).hexdigest()[:16] + '"' for p, b in bodies.items()}
    lm = "Mon, 23 Nov 2026 12:00:00 GMT"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                await asyncio.sleep(args.latency)
                body = bodies.get(path)
                if body is None:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                elif headers.get("if-none-match") == etags[path]:
                    writer.write(f"HTTP/1.1 304 Not Modified\r\nETag: {etags[path]}\r\nContent-Length: 0\r\n\r\n"
                                 .encode())
                else:
                    writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml; charset=utf-8\r\n"
                                 f"ETag: {etags[path]}\r\nLast-Modified: {lm}\r\nContent-Length: {len(body)}\r\n\r\n"
                                 .encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    # one listening socket per loopback "outlet" (127.0.0.1 … 127.0.0.H, all on lo), same port
    first = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port = first.sockets[0].getsockname()[1]
    servers = [first] + [await asyncio.start_server(handle, f"127.0.0.{h}", port, backlog=1024)
                         for h in range(2, args.hosts + 1)]
    print(json.dumps({"port": port, "bytes": sum(map(len, bodies.values()))}), flush=True)
    await asyncio.gather(*(srv.serve_forever() for srv in servers))


# --- measuring a process tree ---------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except OSError:
        return 0


def _cpu_s(pid: int, with_children: bool) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if with_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class TreeSampler:
    """Peak summed RSS of this process and its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_kb = 0
        self.helpers: set[int] = set()  # descendants seen (parser workers, the fork server)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            pids = _tree(me)
            self.helpers.update(p for p in pids if p != me)
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def self_cpu_s() -> float:
    """CPU seconds of this process alone (all its threads: the cycle, the poll's event loop)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def tree_cpu_s() -> float:
    """CPU seconds of this process, its reaped children, and the multiprocessing fork server
    (whose reaped children, the parser workers, are in its cutime/cstime)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rc = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = ru.ru_utime + ru.ru_stime + rc.ru_utime + rc.ru_stime
    try:
        from multiprocessing import forkserver

        fs_pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
        if fs_pid:
            total += _cpu_s(fs_pid, with_children=True)
    except Exception:  # noqa: BLE001 - best effort
        pass
    return total


# --- one configuration ----------------------------------------------------------------------------

def child(args) -> dict:
    from pipeline.config import FeedConfig, load_topics
    from pipeline.cycle import run_cycle
    from pipeline.settings import Settings
    from pipeline.store.sqlite import SQLiteStore

    overrides = {"fetch_concurrency": args.concurrency, **CONFIGS[args.child]}
    with tempfile.TemporaryDirectory(prefix="mediamon-bench-poll-") as tmp:
        settings = Settings(data_dir=Path(tmp), config_dir=ROOT / "config", translation_backend="none",
                            allow_private_networks=True, fetch_timeout=120.0, **overrides)
        feeds = [FeedConfig(id=f"f{n}", url=f"http://127.0.0.{1 + n % args.hosts}:{args.port}/f{n}.xml",
                            source=f"Bench {n}", language="ru" if n % 2 == 0 else "en") for n in range(args.feeds)]
        topics = load_topics(ROOT / "config")
        store = SQLiteStore(settings.store_path)
        cycles = []
        try:
            for name in ("first", "steady"):
                cpu0, self0 = tree_cpu_s(), self_cpu_s()
                t0 = time.perf_counter()
                stages: dict[str, float] = {}

                def hook(stage: str, t0=t0, stages=stages) -> None:
                    # seconds from the start to the (last) end of each stage; batches stored mid-poll
                    stages[stage] = round(time.perf_counter() - t0, 2)
                    if stage == "indexed":
                        stages["index_batches"] = stages.get("index_batches", 0) + 1
                        stages.setdefault("first_batch_indexed", stages[stage])

                with TreeSampler() as sampler:
                    report = run_cycle(settings, store=store, feeds=feeds, topics=topics, alerts=[], force=True,
                                       hook=hook)
                wall = time.perf_counter() - t0
                time.sleep(0.2)  # let the fork server reap the parser workers
                c = report.counters_dict()
                cycles.append({
                    "cycle": name, "wall_s": round(wall, 2), "cpu_s": round(tree_cpu_s() - cpu0, 2),
                    "cpu_s_cycle_process": round(self_cpu_s() - self0, 2),
                    "items_seen": c["items_seen"], "new": c["new"], "indexed": c["indexed"],
                    "items_s": round(c["items_seen"] / wall, 1), "fetched": c["fetched"],
                    "not_modified": c["not_modified"], "failed_feeds": c["failed_feeds"],
                    "peak_rss_mb": round(vm_hwm_mb(), 1), "peak_tree_rss_mb": round(sampler.peak_kb / 1024, 1),
                    "helper_processes": len(sampler.helpers), "stages_done_at_s": stages,
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                })
        finally:
            store.close()
    return {"config": args.child, "settings": overrides, "cycles": cycles}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=500)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--latency", type=float, default=0.1, help="server latency per request, seconds")
    ap.add_argument("--concurrency", type=int, default=Settings().fetch_concurrency,
                    help="fetch concurrency of the concurrent configs (default: the shipped default)")
    ap.add_argument("--hosts", type=int, default=50,
                    help="loopback addresses 127.0.0.1..N the feeds are spread over (outlets; the per-host "
                         "limit MEDIAMON_FETCH_PER_HOST applies to each)")
    ap.add_argument("--configs", default="concurrent,concurrent_thread,serial")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args))
        return
    if args.child:
        print(json.dumps(child(args)))
        return

    import platform

    server = subprocess.Popen([sys.executable, __file__, "--serve", "--feeds", str(args.feeds), "--items",
                               str(args.items), "--latency", str(args.latency), "--hosts", str(args.hosts)],
                              stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(server.stdout.readline())
        runs = {}
        for cfg in [c for c in args.configs.split(",") if c]:
            cmd = [sys.executable, __file__, "--child", cfg, "--port", str(info["port"]), "--feeds", str(args.feeds),
                   "--items", str(args.items), "--concurrency", str(args.concurrency), "--hosts", str(args.hosts)]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True)
            runs[cfg] = json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait()

    def get(cfg: str, cycle: int, key: str):
        return runs[cfg]["cycles"][cycle][key] if cfg in runs else None

    print(json.dumps({
        "feeds": args.feeds, "items_per_feed": args.items, "latency_s": args.latency,
        "concurrency": args.concurrency, "hosts": args.hosts, "per_host": Settings().fetch_per_host,
        "served_mb": round(info["bytes"] / 2**20, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
        "first_cycle_s": get("concurrent", 0, "wall_s"),
        "steady_cycle_s": get("concurrent", 1, "wall_s"),
        "first_cycle_items_s": get("concurrent", 0, "items_s"),
        "first_cycle_peak_tree_rss_mb": get("concurrent", 0, "peak_tree_rss_mb"),
        "serial_first_cycle_s": get("serial", 0, "wall_s"),
        "serial_steady_cycle_s": get("serial", 1, "wall_s"),
        "thread_first_cycle_s": get("concurrent_thread", 0, "wall_s"),
        "runs": runs,
    }))


if __name__ == "__main__":
    main()
