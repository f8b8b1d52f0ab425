"""Load time of a big feeds.yaml: PyYAML's pure-Python SafeLoader (before issue 16) vs libyaml's
CSafeLoader (now, ``pipeline.configfile.YAML_LOADER``), for the YAML step alone and for the whole
``pipeline.config.load_feeds`` (YAML + validation of every entry).

Usage: python bench/yaml_load.py [--feeds 100000] [--repeat 1]
Prints one JSON object (CPU seconds of this process, best of ``--repeat``).  Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from pipeline import configfile  # noqa: E402
from pipeline.config import load_feeds  # noqa: E402


def write_feeds(config_dir: Path, n: int) -> Path:
    """``n`` feeds as an analyst writes them (block style, a few optional fields)."""
    lines = ["feeds:"]
    for i in range(n):
        lines += [f"  - id: feed-{i:06d}", f"    url: https://outlet{i % 5000}.example/rss/{i}",
                  f"    source: Outlet {i % 5000}", f"    language: {'ru' if i % 2 else 'en'}",
                  "    tags: [news, politics]"]
        if i % 10 == 0:
            lines.append("    interval: 1800")
    path = config_dir / "feeds.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def best(fn, repeat: int) -> float:
    """CPU seconds of the process (the development machines are shared: wall time says little)."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return round(min(times), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    c_loader = getattr(yaml, "CSafeLoader", None)
    out: dict = {"feeds": args.feeds, "python": platform.python_version(), "pyyaml": yaml.__version__,
                 "libyaml": c_loader is not None, "cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        config_dir = Path(tmp)
        path = write_feeds(config_dir, args.feeds)
        text = path.read_text(encoding="utf-8")
        out["file_mib"] = round(len(text.encode()) / 2**20, 1)
        loaders = {"before_safe_loader": yaml.SafeLoader}
        if c_loader is not None:
            loaders["after_c_safe_loader"] = c_loader
        saved = configfile.YAML_LOADER
        try:
            for name, loader in loaders.items():
                out[f"yaml_only_{name}_cpu_s"] = best(
                    lambda loader=loader: yaml.load(text, Loader=loader), args.repeat)  # noqa: S506
                configfile.YAML_LOADER = loader
                counts: list[int] = []
                out[f"load_feeds_{name}_cpu_s"] = best(
                    lambda counts=counts: counts.append(len(load_feeds(config_dir))), args.repeat)
                assert counts == [args.feeds] * args.repeat
        finally:
            configfile.YAML_LOADER = saved
    print(json.dumps(out))


if __name__ == "__main__":
    main()
