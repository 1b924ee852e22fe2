"""Time and measure the memory of reading flat (single-resolution) HEALPix sky maps.

Usage: ``python benchmarks/flatmap.py [--synthetic] [--repeats N]``

Each read runs in a fresh process, so its peak resident memory (``ru_maxrss``, imports
included) is that of the read alone. Reads the LVK user guide's nside-2048 NESTED map, the
IPN nside-2048 RING map and the nside-1024 GW190814 map with distance layers when
``../shared/samples`` holds them, and a synthetic nside-2048 map otherwise (or with
``--synthetic``). Prints wall and CPU seconds (on a shared machine the CPU time is the
figure that does not depend on the other processes; the load average is printed too) and
exits 1 if a read of an nside-2048 map takes more than 1.5 s of CPU or 600 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"
BUDGET_S = 1.5
BUDGET_MB = 600.0

_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from followup.skymap import read_skymap
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
wall, cpu = time.perf_counter(), time.process_time()
sky = read_skymap({path!r})
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"wall": wall, "cpu": cpu, "peak_mb": peak, "base_mb": base,
                  "pixels": len(sky), "area90": sky.area90,
                  "nside": sky.meta.get("flat_nside")}}))
"""


def synthetic_map(directory: Path) -> Path:
    """An nside-2048 NESTED flat map of a 30 deg2 Gaussian blob, written once."""
    sys.path.insert(0, str(REPO))
    from followup.skymap import make_gaussian_skymap

    path = directory / "synthetic-2048.fits.gz"
    path.write_bytes(
        make_gaussian_skymap(194.3, -17.9, 1.6, form="flat", nside=2048, compress=True)
    )
    return path


def read_once(path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO), path=str(path))],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="also read a synthetic map")
    parser.add_argument("--repeats", type=int, default=3, help="reads per map (best is kept)")
    args = parser.parse_args()
    maps = [
        SAMPLES / "lvk_userguide" / "bayestar.slim.fits.gz",
        SAMPLES / "skyportal" / "GRB220617A_IPN_map_hpx.fits.gz",
        SAMPLES / "skyportal" / "GW190814_LALInference.v1.fits.gz",
    ]
    maps = [m for m in maps if m.exists()]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic or not maps:
            maps.append(synthetic_map(Path(tmp)))
        print(f"flat map reads (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        for path in maps:
            runs = [read_once(path) for _ in range(max(1, args.repeats))]
            best = min(runs, key=lambda r: r["cpu"])
            peak = max(r["peak_mb"] for r in runs)
            within = best["cpu"] <= BUDGET_S and peak <= BUDGET_MB
            if best["nside"] == 2048:
                ok &= within
            print(
                f"  {path.name}: nside {best['nside']}, {path.stat().st_size / 1e6:.2f} MB on disk"
                f" -> {best['pixels']} pixels, area90 {best['area90']:.2f} deg2\n"
                f"    cpu {best['cpu']:.2f} s, wall {min(r['wall'] for r in runs):.2f} s, "
                f"peak {peak:.0f} MB (imports {best['base_mb']:.0f} MB) "
                f"[{'ok' if within else 'OVER'}: budget {BUDGET_S} s, {BUDGET_MB:.0f} MB]"
            )
    print("flat maps within budget" if ok else "flat maps OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
