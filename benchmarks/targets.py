"""Time target planning: sky-map bytes in, ranked observable LCO targets out.

Usage: ``python benchmarks/targets.py [--quick]``

Measures the preliminary-alert path (decode the multi-order map, 90% area, tiling with
visibility) for a ~30 deg2 map and a 1,000+ deg2 map (the LVK samples when
``../shared/samples`` exists, else synthetic maps of the same size), per step, cold (first call
in the process, IERS table opened) and warm (median of repeats). Also the other instruments,
galaxy targeting and a flat nside-2048 map. Exits 1 if the warm preliminary path of either map
takes 2 s or more.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from followup.models import Alert, AlertKind, AlertType  # noqa: E402
from followup.skymap import make_gaussian_skymap, read_skymap  # noqa: E402
from followup.targeting import GalaxyRule, plan_targets  # noqa: E402
from followup.tiling import tile_skymap  # noqa: E402
from followup.visibility import VisibilityCalculator  # noqa: E402

SAMPLES = REPO.parent / "shared" / "samples"
START = datetime(2027, 4, 10, 0, 0, tzinfo=UTC)
BUDGET_S = 2.0


def alert(data: bytes, event_id: str) -> Alert:
    return Alert(
        source="LVK",
        kind=AlertKind.GW,
        format="lvk-json",
        event_id=event_id,
        alert_type=AlertType.PRELIMINARY,
        issued_at=START,
        skymap=data,
    )


def timed(fn, repeats: int) -> tuple[float, object]:
    times = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def maps() -> list[tuple[str, bytes]]:
    out = []
    small = SAMPLES / "lvk_userguide" / "bayestar.multiorder.fits"
    large = SAMPLES / "gwcelery" / "MS220722v_bayestar.multiorder.fits"
    if small.exists():
        out.append(("MS181101ab bayestar (LVK user guide)", small.read_bytes()))
    else:  # ~30 deg2: sigma = sqrt(30 / (pi * 2 ln 10)) deg
        sigma = math.sqrt(30 / (math.pi * -2 * math.log(0.1)))
        out.append(
            ("synthetic 30 deg2", make_gaussian_skymap(194.3, -17.9, sigma, distance_mpc=40))
        )
    if large.exists():
        out.append(("MS220722v bayestar (gwcelery)", large.read_bytes()))
    else:
        out.append(
            (
                "synthetic ~1200 deg2",
                make_gaussian_skymap(98.3, -27.4, 12.0, sigma_minor_deg=4.0, distance_mpc=126),
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip flat maps")
    args = parser.parse_args()
    repeats = 3 if args.quick else 10
    warnings.simplefilter("ignore")
    ok = True

    print(
        f"target planning benchmark ({'quick' if args.quick else 'full'}, start {START:%Y-%m-%d})"
    )
    t0 = time.perf_counter()
    VisibilityCalculator(START)
    print(
        f"  cold start (IERS table, Sun ephemeris, first transforms): {time.perf_counter() - t0:.3f} s"
    )

    for label, data in maps():
        print(f"\n{label}: {len(data) / 1e6:.2f} MB")
        t_dec, sky = timed(lambda data=data: read_skymap(data), repeats)
        t_area, area = timed(lambda sky=sky: sky.area(0.9), repeats)
        print(f"  decode              {t_dec * 1e3:8.1f} ms  ({len(sky)} pixels)")
        print(f"  area90              {t_area * 1e3:8.1f} ms  ({area:.2f} deg2)")
        for max_targets in (5, 20):
            t_tile, tiling = timed(
                lambda sky=sky, m=max_targets: tile_skymap(sky, max_fields=m), repeats
            )
            print(
                f"  tiling Sinistro x{max_targets:<3d}{t_tile * 1e3:8.1f} ms  "
                f"(covers {tiling.covered_probability:.4f}, {tiling.candidates} candidates)"
            )
        calc = VisibilityCalculator(START)
        t_vis, _ = timed(lambda calc=calc, t=tiling: calc.windows(t.ra, t.dec), repeats)
        print(f"  windows of 20 fields{t_vis * 1e3:7.1f} ms")
        for max_targets in (5, 20):
            t_plan, plan = timed(
                lambda data=data, m=max_targets: plan_targets(
                    alert(data, "bench"), max_targets=m, start=START, allow_empty=True
                ),
                repeats,
            )
            verdict = "ok" if t_plan < BUDGET_S else "OVER BUDGET"
            ok &= t_plan < BUDGET_S
            print(
                f"  preliminary path x{max_targets:<3d}{t_plan * 1e3:7.1f} ms  (bytes -> plan: "
                f"{len(plan.targets)} targets, {len(plan.dropped)} dropped, covered "
                f"{plan.covered_probability:.4f}) [{verdict}, budget {BUDGET_S:g} s]"
            )
        for instrument in ("0M4-SCICAM-QHY600", "2M0-SCICAM-MUSCAT"):
            t_other, plan = timed(
                lambda data=data, i=instrument: plan_targets(
                    alert(data, "bench"),
                    instrument_type=i,
                    max_targets=10,
                    start=START,
                    allow_empty=True,
                ),
                max(1, repeats // 2),
            )
            print(
                f"  plan {instrument} x10 {t_other * 1e3:7.1f} ms  (covered "
                f"{plan.covered_probability:.4f})"
            )

    galaxies = SAMPLES / "gwemopt_pypi" / "catalog_glade.csv"
    gw190814 = SAMPLES / "skyportal" / "GW190814_LALInference.v1.fits.gz"
    if galaxies.exists() and gw190814.exists():
        from followup.galaxies import LocalGalaxyCatalog

        sky = read_skymap(gw190814)
        catalog = LocalGalaxyCatalog(galaxies)
        catalog.table  # noqa: B018 - read the file once, outside the timing
        t_gal, plan = timed(
            lambda: plan_targets(
                alert(b"", "S190814bv"),
                skymap=sky,
                catalog=catalog,
                galaxy_rule=GalaxyRule(max_galaxies=300),
                max_targets=20,
                start=datetime(2026, 9, 1, tzinfo=UTC),
                allow_empty=True,
            ),
            repeats,
        )
        print(
            f"\nS190814bv galaxies (2000-galaxy GLADE sample, decoded map): {t_gal * 1e3:.1f} ms "
            f"({plan.strategy}, {plan.n_galaxies_in_volume} galaxies in the 90% volume)"
        )
    if not args.quick:
        for name in (
            "lvk_userguide/bayestar.slim.fits.gz",
            "skyportal/GW190814_LALInference.v1.fits.gz",
        ):
            path = SAMPLES / name
            if path.exists():
                t_flat, sky = timed(lambda path=path: read_skymap(path), 1)
                print(f"flat map {name}: decode {t_flat:.2f} s -> {len(sky)} multi-order pixels")

    print("\npreliminary path within budget" if ok else "\npreliminary path OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
