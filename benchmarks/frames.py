"""Per-frame cost of calibration + photometry, followup's way against the plain ccdproc/photutils way.

Usage: ``python benchmarks/frames.py [--quick] [--repeat N] [--lacosmic]``

Frames come from the sandbox's synthetic sky (4096 x 4096 Sinistro frames; ``--quick`` uses
2048 x 2048 and fewer repeats). Every configuration runs in a fresh Python process so that its
peak memory (``ru_maxrss``) is its own. Printed:

* masters: followup's sigma-clipped median (``combine``, float32, row chunks) against
  ``ccdproc.combine`` with its defaults, and with the same clipping as ours (median and
  ``mad_std``, float32, the same memory limit; bottleneck installed, so its ``Combiner`` uses it);
* calibration of one raw frame: ``followup.reduction.MasterCalibration.calibrate`` (bias, dark,
  flat, gain, error map and pixel flags in float32) against ``ccdproc.ccd_process`` (defaults,
  and with ``error=True`` which is the like-for-like one), and the memory-bandwidth floor: plain
  numpy ``(a - b) / c`` on the same arrays. Ours is timed as ``reduce_raw_frames`` runs it, on a
  frame just read and given up (science, flags and mask reuse its buffers), and also on a frame
  the caller keeps (every output a new array);
* overscan subtraction and trimming of a raw frame with 64 overscan columns: ours against
  ccdproc's ``subtract_overscan`` + ``trim_image``;
* a night: ``reduce_raw_frames`` (calibration frames sorted by ``ImageFileCollection``, masters,
  one science frame calibrated and written);
* photometry of one calibrated frame: ``followup.photometry.measure`` (zero point from the
  reference catalogue + forced aperture photometry of the target) against the plain way:
  photutils ``Background2D`` + ``DAOStarFinder`` over the whole frame, aperture photometry of
  every detection, a catalogue match and a median zero point;
* the pieces photutils offers on a reduced frame: the background mesh (ours against
  ``Background2D``), source detection (``detect_sources`` against ``Background2D`` +
  ``DAOStarFinder`` and against ``Background2D`` + ``SourceFinder``), and forced PSF photometry
  (ours against ``PSFPhotometry`` with the same Gaussian, positions fixed) of one target and of
  every reference star;
* a whole BANZAI-like reduced frame measured from its ``.fits.fz`` file (read + decompress +
  zero point from its CAT + forced photometry);
* with ``--lacosmic``: LACosmic on one frame through ccdproc (ours) and astroscrappy directly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RA, DEC = 150.0, 2.2
TARGET = (150.012, 2.207)
START = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)


def _peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    ``VmHWM`` from /proc is the high-water mark of this process's own address space; getrusage's
    ru_maxrss would also count the parent's peak at fork time on Linux.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(
    function: Any, repeat: int, *, warm_up: bool = True, setup: Any = None
) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls, after one untimed call (imports, caches).

    With ``setup``, each call is ``function(setup())`` and only ``function`` is timed.
    """
    times = []
    result = None
    for call in range(repeat + (1 if warm_up else 0)):
        args = (setup(),) if setup is not None else ()
        start = time.perf_counter()
        result = function(*args)
        if call or not warm_up:
            times.append(time.perf_counter() - start)
    return statistics.median(times), result


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def _spec(number: int, kind: str, level: int, exptime: float) -> Any:
    from sandbox.specs import FrameSpec

    code = {"EXPOSE": "e", "BIAS": "b", "DARK": "d", "SKYFLAT": "f"}[kind]
    return FrameSpec(
        basename=f"cpt1m010-fa16-20250301-{number:04d}-{code}{level:02d}",
        frame_number=number,
        reduction_level=level,  # type: ignore[arg-type]
        configuration_type=kind,  # type: ignore[arg-type]
        ra=RA,
        dec=DEC,
        filter="rp" if kind in ("EXPOSE", "SKYFLAT") else None,
        exposure_time_s=0.0 if kind == "BIAS" else exptime,
        date_obs=START + timedelta(minutes=number),
    )


def prepare(folder: Path, size: int, n_cal: int) -> dict[str, Any]:
    """Render calibration, raw and reduced frames; build followup's masters; write everything."""
    from astropy.io import fits

    from followup.reduction import (
        calibrate,
        frame_to_hdulist,
        make_master_bias,
        make_master_dark,
        make_master_flat,
    )
    from sandbox.sky import SyntheticSky
    from sandbox.specs import Transient

    target = Transient(
        name="AT-bench", ra=TARGET[0], dec=TARGET[1], peak_mag={"rp": 18.5}, peak_time=START
    )
    sky = SyntheticSky(seed=5, shape=(size, size), transients=[target])
    info: dict[str, Any] = {"size": size, "n_cal": n_cal}
    start = time.perf_counter()
    groups = {"bias": ("BIAS", 0.0), "dark": ("DARK", 300.0), "flat": ("SKYFLAT", 5.0)}
    paths: dict[str, list[str]] = {}
    number = 1
    render_times = []
    for name, (kind, exptime) in groups.items():
        paths[name] = []
        for _ in range(n_cal):
            t0 = time.perf_counter()
            data = sky.render(_spec(number, kind, 0, exptime))
            render_times.append(time.perf_counter() - t0)
            path = folder / f"{name}{number:03d}.fits.fz"
            path.write_bytes(data)
            paths[name].append(str(path))
            number += 1
    raw_path = folder / "science-e00.fits.fz"
    raw_path.write_bytes(sky.render(_spec(100, "EXPOSE", 0, 300.0)))
    t0 = time.perf_counter()
    reduced_bytes = sky.render(_spec(101, "EXPOSE", 91, 300.0))
    info["render_reduced_s"] = time.perf_counter() - t0
    info["reduced_size_mb"] = len(reduced_bytes) / 1e6
    (folder / "science-e91.fits.fz").write_bytes(reduced_bytes)
    info["render_raw_median_s"] = statistics.median(render_times)
    info["render_total_s"] = time.perf_counter() - start
    bias = make_master_bias(paths["bias"])
    dark = make_master_dark(paths["dark"], bias=bias)
    flat = make_master_flat(paths["flat"], bias=bias, dark=dark)
    for name, master in (("bias", bias), ("dark", dark), ("flat", flat)):
        np.save(folder / f"master_{name}.npy", master.data)
        np.save(folder / f"master_{name}_err.npy", master.uncertainty.array)
    calibrated = calibrate(str(raw_path), bias=bias, dark=dark, flat=flat, cosmic_rays="none")
    frame_to_hdulist(calibrated).writeto(folder / "science-calibrated.fits")
    sky.reference_catalog(RA, DEC, size * 0.389 / 3600 * 0.75).write(folder / "refcat2.ecsv")
    _write_overscan_frame(raw_path, folder / "science-overscan.fits")
    with fits.open(raw_path) as hdul:
        info["gain"] = float(hdul["SCI"].header["GAIN"])
    paths["raw"] = [str(raw_path)]
    info["paths"] = paths
    (folder / "info.json").write_text(json.dumps(info))
    return info


OVERSCAN_COLUMNS = 64


def _write_overscan_frame(raw_path: Path, out: Path) -> None:
    """The raw frame with a serial overscan added on the right, as BIASSEC/TRIMSEC describe."""
    from astropy.io import fits

    with fits.open(raw_path) as hdul:
        data = np.asarray(hdul["SCI"].data, np.float32)
        header = hdul["SCI"].header.copy()
    ny, nx = data.shape
    rng = np.random.default_rng(1)
    overscan = rng.normal(500.0, 6.0, (ny, OVERSCAN_COLUMNS)).astype(np.float32)
    header["BIASSEC"] = f"[{nx + 1}:{nx + OVERSCAN_COLUMNS},1:{ny}]"
    header["TRIMSEC"] = f"[1:{nx},1:{ny}]"
    fits.PrimaryHDU(np.hstack([data + 500.0, overscan]), header=header).writeto(out)


# ---------------------------------------------------------------------------------------------
# Children: one configuration each
# ---------------------------------------------------------------------------------------------


def _masters(folder: Path) -> dict[str, Any]:
    from astropy.nddata import CCDData, StdDevUncertainty

    out = {}
    for name in ("bias", "dark", "flat"):
        data = np.load(folder / f"master_{name}.npy")
        err = np.load(folder / f"master_{name}_err.npy")
        out[name] = CCDData(
            data,
            unit={"bias": "adu", "dark": "adu/s", "flat": ""}[name],
            uncertainty=StdDevUncertainty(err),
        )
    return out


class Context:
    """What a child configuration gets: the data folder, the info of ``prepare`` and the repeats."""

    def __init__(self, folder: Path, repeat: int) -> None:
        self.folder = folder
        self.repeat = repeat
        self.info = json.loads((folder / "info.json").read_text())
        self.paths = self.info["paths"]

    def reduced(self) -> Any:
        """The BANZAI-like reduced frame, prepared for photometry (untimed)."""
        from followup.photometry.frame import prepare_frame

        return prepare_frame(self.folder / "science-e91.fits.fz")


def floor(ctx: Context, result: dict[str, Any]) -> None:
    from followup.reduction import read_frame

    raw = np.asarray(read_frame(ctx.paths["raw"][0]).ccd.data, np.float32)
    bias = np.load(ctx.folder / "master_bias.npy")
    flat = np.load(ctx.folder / "master_flat.npy")
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["seconds"], _ = _timed(lambda: (raw - bias) / flat, ctx.repeat * 5)


def mine_masters(ctx: Context, result: dict[str, Any]) -> None:
    import bottleneck  # noqa: F401 - imports are not part of the timing

    from followup.reduction import make_master_bias, make_master_dark, make_master_flat

    paths = ctx.paths
    result["rss_inputs_mib"] = _peak_rss_mib()

    def build() -> None:
        bias = make_master_bias(paths["bias"])
        dark = make_master_dark(paths["dark"], bias=bias)
        make_master_flat(paths["flat"], bias=bias, dark=dark)

    result["seconds"], _ = _timed(build, max(1, ctx.repeat // 2), warm_up=False)


def _plain_masters(ctx: Context, result: dict[str, Any], **combine: Any) -> None:
    import astropy.units as u
    import ccdproc

    paths = ctx.paths
    result["rss_inputs_mib"] = _peak_rss_mib()

    def build_plain() -> None:
        bias = ccdproc.combine(paths["bias"], unit="adu", hdu=1, **combine)
        darks = [
            ccdproc.subtract_bias(ccdproc.CCDData.read(p, unit="adu", hdu=1), bias)
            for p in paths["dark"]
        ]
        dark = ccdproc.combine(darks, **combine)
        dark.meta["EXPTIME"] = 300.0
        flats = [
            ccdproc.subtract_dark(
                ccdproc.subtract_bias(ccdproc.CCDData.read(p, unit="adu", hdu=1), bias),
                dark,
                exposure_time="EXPTIME",
                exposure_unit=u.s,
                scale=True,
            )
            for p in paths["flat"]
        ]
        ccdproc.combine(flats, scale=lambda a: 1.0 / np.median(a), **combine)

    result["seconds"], _ = _timed(build_plain, max(1, ctx.repeat // 2), warm_up=False)


def plain_masters(ctx: Context, result: dict[str, Any]) -> None:
    _plain_masters(ctx, result)


def plain_masters_clipped(ctx: Context, result: dict[str, Any]) -> None:
    from astropy.stats import mad_std

    _plain_masters(
        ctx,
        result,
        method="median",
        sigma_clip=True,
        sigma_clip_low_thresh=3.0,
        sigma_clip_high_thresh=3.0,
        sigma_clip_func=np.ma.median,
        sigma_clip_dev_func=mad_std,
        dtype=np.float32,
        mem_limit=256e6,
    )


def _mine_calibrate(ctx: Context, result: dict[str, Any], *, kept: bool) -> None:
    from astropy.nddata import CCDData

    from followup.reduction import MasterCalibration, read_frame

    masters = _masters(ctx.folder)
    raw = read_frame(ctx.paths["raw"][0])
    result["rss_inputs_mib"] = _peak_rss_mib()
    start = time.perf_counter()
    prepared = MasterCalibration(
        masters["bias"], masters["dark"], masters["flat"], gain=ctx.info["gain"]
    )
    prepared.calibrate(raw, cosmic_rays="none")  # first frame of this exposure time: offset cached
    result["prepare_seconds"] = time.perf_counter() - start
    if kept:
        # The caller keeps its raw frame: every output is a new array.
        result["seconds"], out = _timed(
            lambda: prepared.calibrate(raw, cosmic_rays="none"), ctx.repeat * 5
        )
    else:
        # As reduce_raw_frames does with each frame it has just read: the frame is given up
        # and calibrated in its own buffers. Each call gets a just-made copy (untimed).
        def fresh_frame() -> Any:
            ccd = raw.ccd
            return CCDData(
                ccd.data.copy(),
                unit=ccd.unit,
                flags=ccd.flags.copy(),
                mask=ccd.mask.copy(),
                meta=ccd.meta,
            )

        result["seconds"], out = _timed(
            lambda frame: prepared.calibrate(frame, cosmic_rays="none", overwrite_input=True),
            ctx.repeat * 5,
            setup=fresh_frame,
        )
    result["dtype"] = str(out.data.dtype)


def mine_calibrate(ctx: Context, result: dict[str, Any]) -> None:
    _mine_calibrate(ctx, result, kept=False)


def mine_calibrate_kept(ctx: Context, result: dict[str, Any]) -> None:
    _mine_calibrate(ctx, result, kept=True)


def mine_calibrate_oneoff(ctx: Context, result: dict[str, Any]) -> None:
    from followup.reduction import calibrate, read_frame

    masters = _masters(ctx.folder)
    raw = read_frame(ctx.paths["raw"][0])
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["seconds"], _ = _timed(
        lambda: calibrate(raw, **masters, cosmic_rays="none"), ctx.repeat * 3
    )


def _plain_calibrate(ctx: Context, result: dict[str, Any], *, error: bool) -> None:
    import astropy.units as u
    import ccdproc

    from followup.reduction import read_frame

    masters = _masters(ctx.folder)
    raw = read_frame(ctx.paths["raw"][0])
    ccd = ccdproc.CCDData(raw.ccd.data, unit="adu", meta=raw.header)
    dark = ccdproc.CCDData(masters["dark"].data, unit="adu", meta={"EXPTIME": 1.0})
    flat = ccdproc.CCDData(masters["flat"].data, unit="adu")
    kwargs: dict[str, Any] = {
        "master_bias": masters["bias"],
        "dark_frame": dark,
        "master_flat": flat,
        "exposure_key": "EXPTIME",
        "exposure_unit": u.s,
        "dark_scale": True,
        "gain": ctx.info["gain"] * u.electron / u.adu,
        "gain_corrected": False,
    }
    if error:
        kwargs.update(readnoise=7.5 * u.electron, error=True)
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["seconds"], out = _timed(lambda: ccdproc.ccd_process(ccd, **kwargs), ctx.repeat)
    result["dtype"] = str(out.data.dtype)


def plain_calibrate(ctx: Context, result: dict[str, Any]) -> None:
    _plain_calibrate(ctx, result, error=False)


def plain_calibrate_error(ctx: Context, result: dict[str, Any]) -> None:
    _plain_calibrate(ctx, result, error=True)


def mine_overscan(ctx: Context, result: dict[str, Any]) -> None:
    from astropy.io import fits

    from followup.reduction.overscan import OverscanLayout

    with fits.open(ctx.folder / "science-overscan.fits") as hdul:
        raw, header = np.asarray(hdul[0].data, np.float32), hdul[0].header
    layout = OverscanLayout.from_header(header, raw.shape)
    assert layout is not None
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["seconds"], (out, _) = _timed(lambda: layout.correct(raw[layout.rows]), ctx.repeat * 5)
    result["shape"] = list(out.shape)


def plain_overscan(ctx: Context, result: dict[str, Any]) -> None:
    import ccdproc
    from astropy.io import fits

    with fits.open(ctx.folder / "science-overscan.fits") as hdul:
        raw, header = np.asarray(hdul[0].data, np.float32), hdul[0].header
    ccd = ccdproc.CCDData(raw, unit="adu", meta=header)
    result["rss_inputs_mib"] = _peak_rss_mib()

    def plain() -> Any:
        subtracted = ccdproc.subtract_overscan(
            ccd, fits_section=header["BIASSEC"], median=True, overscan_axis=1
        )
        return ccdproc.trim_image(subtracted, fits_section=header["TRIMSEC"])

    result["seconds"], out = _timed(plain, ctx.repeat * 5)
    result["shape"] = list(out.shape)


def mine_night(ctx: Context, result: dict[str, Any]) -> None:
    from followup.reduction import reduce_raw_frames

    paths = ctx.paths
    calibrations = [Path(p) for kind in ("bias", "dark", "flat") for p in paths[kind]]
    out = ctx.folder / "night"
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["seconds"], _ = _timed(
        lambda: reduce_raw_frames([Path(paths["raw"][0])], calibrations, out, cosmic_rays="none"),
        max(1, ctx.repeat // 2),
        warm_up=False,
    )


def _lacosmic_input(ctx: Context) -> Any:
    from followup.reduction import calibrate, read_frame

    masters = _masters(ctx.folder)
    return calibrate(read_frame(ctx.paths["raw"][0]), **masters, cosmic_rays="none")


def mine_lacosmic(ctx: Context, result: dict[str, Any]) -> None:
    from followup.reduction import detect_cosmic_rays

    reduced = _lacosmic_input(ctx)
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["seconds"], out = _timed(lambda: detect_cosmic_rays(reduced), 1, warm_up=False)
    result["flagged"] = int(out.meta["NCRPIX"])


def plain_lacosmic(ctx: Context, result: dict[str, Any]) -> None:
    import astroscrappy

    from followup.reduction import BPM_BAD, BPM_SATURATED

    reduced = _lacosmic_input(ctx)
    result["rss_inputs_mib"] = _peak_rss_mib()

    def direct() -> Any:
        crmask, _ = astroscrappy.detect_cosmics(
            np.asarray(reduced.data, np.float32),
            inmask=(reduced.flags & (BPM_BAD | BPM_SATURATED)) > 0,
            sigclip=4.5,
            objlim=5.0,
            gain=1.0,
            readnoise=float(reduced.meta["RDNOISE"]),
            satlevel=float(reduced.meta.get("SATURATE", 1e9)),
            niter=2,
            sepmed=True,
            cleantype="meanmask",
            fsmode="median",
        )
        return crmask

    result["seconds"], crmask = _timed(direct, 1, warm_up=False)
    result["flagged"] = int(crmask.sum())


def mine_photometry(ctx: Context, result: dict[str, Any]) -> None:
    from astropy.table import Table

    from followup.photometry import measure
    from followup.reduction import read_frame

    frame = read_frame(ctx.folder / "science-calibrated.fits")
    refcat = Table.read(ctx.folder / "refcat2.ecsv")
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["seconds"], m = _timed(lambda: measure(frame, *TARGET, catalog=refcat), ctx.repeat)
    result["mag"] = m.mag
    result["n_ref"] = m.n_ref_stars


def mine_reduced_frame(ctx: Context, result: dict[str, Any]) -> None:
    from followup.photometry import measure

    path = ctx.folder / "science-e91.fits.fz"
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["seconds"], m = _timed(lambda: measure(path, *TARGET), ctx.repeat)
    result["mag"] = m.mag
    result["n_ref"] = m.n_ref_stars


def plain_photometry(ctx: Context, result: dict[str, Any]) -> None:
    from astropy.coordinates import SkyCoord
    from astropy.stats import SigmaClip
    from astropy.table import Table
    from photutils.aperture import (
        ApertureStats,
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )
    from photutils.background import Background2D
    from photutils.detection import DAOStarFinder

    from followup.reduction import read_frame

    frame = read_frame(ctx.folder / "science-calibrated.fits")
    refcat = Table.read(ctx.folder / "refcat2.ecsv")
    data = np.asarray(frame.ccd.data)
    err = np.asarray(frame.ccd.uncertainty.array)
    mask = np.asarray(frame.ccd.mask)
    wcs = frame.ccd.wcs
    fwhm = 2.0 / 0.389
    exptime = float(frame.header["EXPTIME"])
    result["rss_inputs_mib"] = _peak_rss_mib()

    def plain() -> float:
        bkg = Background2D(data, (64, 64), filter_size=(3, 3), mask=mask)
        sub = data - bkg.background
        sub[mask] = 0.0
        sources = DAOStarFinder(threshold=5 * float(np.median(bkg.background_rms)), fwhm=fwhm)(
            sub, mask=mask
        )
        xy = np.column_stack([sources["x_centroid"], sources["y_centroid"]])
        apertures = CircularAperture(xy, r=fwhm)
        phot = aperture_photometry(data, apertures, error=err, mask=mask)
        local = ApertureStats(
            data, CircularAnnulus(xy, 3 * fwhm, 5 * fwhm), mask=mask, sigma_clip=SigmaClip(3.0)
        ).median
        flux = np.asarray(phot["aperture_sum"]) - local * apertures.area
        ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
        found = SkyCoord(ra, dec, unit="deg")
        ref = SkyCoord(refcat["RA_ICRS"], refcat["DE_ICRS"])
        index, sep, _ = found.match_to_catalog_sky(ref)
        ok = (sep.arcsec < 1.0) & (flux > 0)
        zp = float(
            np.median(np.asarray(refcat["rmag"])[index[ok]] + 2.5 * np.log10(flux[ok] / exptime))
        )
        tx, ty = wcs.all_world2pix(*TARGET, 0)
        target = aperture_photometry(data, CircularAperture((float(tx), float(ty)), r=fwhm))
        tbkg = ApertureStats(
            data,
            CircularAnnulus((float(tx), float(ty)), 3 * fwhm, 5 * fwhm),
            sigma_clip=SigmaClip(3.0),
        ).median
        tflux = float(target["aperture_sum"][0]) - tbkg * np.pi * fwhm**2
        return zp - 2.5 * np.log10(tflux / exptime)

    result["seconds"], result["mag"] = _timed(plain, ctx.repeat)


def _photutils_background(frame: Any) -> Any:
    """The photutils mesh with the estimators ours uses: clipped median, standard deviation.

    ``Background2D`` interpolates its maps when they are first asked for: both are asked for
    here, as ours computes both.
    """
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, MedianBackground, StdBackgroundRMS

    background = Background2D(
        frame.data,
        (64, 64),
        filter_size=(3, 3),
        mask=frame.mask,
        sigma_clip=SigmaClip(3.0),
        bkg_estimator=MedianBackground(),
        bkgrms_estimator=StdBackgroundRMS(),
    )
    return background.background, background.background_rms


def mine_background(ctx: Context, result: dict[str, Any]) -> None:
    from followup.photometry.background import mesh_background

    frame = ctx.reduced()
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["seconds"], (bkg, _) = _timed(
        lambda: mesh_background(frame.data, frame.mask, 64), ctx.repeat
    )
    # How far apart the two meshes are, in units of the noise (untimed).
    plain, plain_rms = _photutils_background(frame)
    result["difference_in_rms"] = float(np.median(np.abs(bkg - plain) / plain_rms))


def plain_background(ctx: Context, result: dict[str, Any]) -> None:
    frame = ctx.reduced()
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["seconds"], _ = _timed(lambda: _photutils_background(frame), ctx.repeat)


def mine_detection(ctx: Context, result: dict[str, Any]) -> None:
    from followup.photometry import detect_sources

    frame = ctx.reduced()
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["seconds"], found = _timed(lambda: detect_sources(frame), ctx.repeat)
    result["found"] = len(found)


def _plain_detection(ctx: Context, result: dict[str, Any], finder: str) -> None:
    from astropy.convolution import convolve
    from photutils.detection import DAOStarFinder
    from photutils.segmentation import SourceFinder, make_2dgaussian_kernel

    frame = ctx.reduced()
    result["rss_inputs_mib"] = _peak_rss_mib()

    def detect() -> int:
        bkg, rms = _photutils_background(frame)
        sub = frame.data - bkg
        sub[frame.mask] = 0.0  # masked pixels left as holes become spurious peaks
        if finder == "dao":
            threshold = 5.0 * float(np.median(rms))
            found = DAOStarFinder(threshold=threshold, fwhm=frame.fwhm)(sub, mask=frame.mask)
            return 0 if found is None else len(found)
        kernel = make_2dgaussian_kernel(frame.fwhm, size=2 * round(1.5 * frame.fwhm) + 1)
        segments = SourceFinder(n_pixels=5, progress_bar=False)(
            convolve(sub, kernel), 1.5 * rms, mask=frame.mask
        )
        return 0 if segments is None else int(segments.n_labels)

    result["seconds"], result["found"] = _timed(detect, ctx.repeat)


def plain_detection_dao(ctx: Context, result: dict[str, Any]) -> None:
    _plain_detection(ctx, result, "dao")


def plain_detection_segments(ctx: Context, result: dict[str, Any]) -> None:
    _plain_detection(ctx, result, "segments")


def _psf_positions(ctx: Context, frame: Any) -> np.ndarray:
    """The target, then every reference star on the frame (pixel positions)."""
    from astropy.table import Table

    refcat = Table.read(ctx.folder / "refcat2.ecsv")
    x, y = frame.wcs.all_world2pix(np.asarray(refcat["RA_ICRS"]), np.asarray(refcat["DE_ICRS"]), 0)
    ny, nx = frame.shape
    inside = (x > 30) & (y > 30) & (x < nx - 30) & (y < ny - 30) & (np.asarray(refcat["rmag"]) < 19)
    tx, ty = frame.wcs.all_world2pix(*TARGET, 0)
    return np.vstack([[float(tx), float(ty)], np.column_stack([x[inside], y[inside]])])


def mine_psf(ctx: Context, result: dict[str, Any]) -> None:
    from followup.photometry.psf import measure_psf

    frame = ctx.reduced()
    xy = _psf_positions(ctx, frame)
    result["rss_inputs_mib"] = _peak_rss_mib()
    result["target_seconds"], _ = _timed(lambda: measure_psf(frame, xy[:1]), ctx.repeat * 5)
    result["seconds"], table = _timed(lambda: measure_psf(frame, xy), ctx.repeat)
    result["stars"] = len(xy) - 1
    result["flux"] = np.asarray(table["psf_flux"].value, float).tolist()


def plain_psf(ctx: Context, result: dict[str, Any]) -> None:
    from astropy.stats import SigmaClip
    from astropy.table import QTable
    from photutils.background import LocalBackground, MedianBackground
    from photutils.psf import CircularGaussianPRF, PSFPhotometry

    from followup.photometry.psf import measure_psf

    frame = ctx.reduced()
    xy = _psf_positions(ctx, frame)
    model = CircularGaussianPRF(fwhm=frame.fwhm)
    model.fwhm.fixed = True
    model.x_0.fixed = True
    model.y_0.fixed = True
    size = 2 * round(1.5 * frame.fwhm) + 1
    background = LocalBackground(
        3 * frame.fwhm, 5 * frame.fwhm, MedianBackground(sigma_clip=SigmaClip(3.0))
    )
    photometry = PSFPhotometry(
        model, (size, size), local_bkg_estimator=background, aperture_radius=frame.fwhm
    )
    result["rss_inputs_mib"] = _peak_rss_mib()

    def fit(positions: np.ndarray) -> Any:
        init = QTable({"x": positions[:, 0], "y": positions[:, 1]})
        return photometry(frame.data, mask=frame.mask, error=frame.err, init_params=init)

    result["target_seconds"], _ = _timed(lambda: fit(xy[:1]), ctx.repeat * 5)
    result["seconds"], table = _timed(lambda: fit(xy), ctx.repeat)
    result["stars"] = len(xy) - 1
    # Agreement with ours on the same stars (untimed): median flux ratio of bright ones.
    ours = np.asarray(measure_psf(frame, xy)["psf_flux"].value, float)
    theirs = np.asarray(table["flux_fit"], float)
    bright = np.isfinite(ours) & np.isfinite(theirs) & (ours > 1e4)
    result["flux_ratio"] = float(np.median(theirs[bright] / ours[bright]))


CONFIGS = {
    function.__name__: function
    for function in (
        floor,
        mine_calibrate,
        mine_calibrate_kept,
        mine_calibrate_oneoff,
        plain_calibrate,
        plain_calibrate_error,
        mine_overscan,
        plain_overscan,
        mine_photometry,
        plain_photometry,
        mine_reduced_frame,
        mine_background,
        plain_background,
        mine_detection,
        plain_detection_dao,
        plain_detection_segments,
        mine_psf,
        plain_psf,
        mine_masters,
        plain_masters,
        plain_masters_clipped,
        mine_night,
        mine_lacosmic,
        plain_lacosmic,
    )
}
"""Every configuration a child can run, by name."""


def child(config: str, folder: Path, repeat: int) -> dict[str, Any]:
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.WARNING)  # ccdproc logs about negative values on every call
    if config not in CONFIGS:
        raise SystemExit(f"unknown configuration {config}")
    result: dict[str, Any] = {"config": config}
    CONFIGS[config](Context(folder, repeat), result)
    result["peak_rss_mib"] = _peak_rss_mib()
    return result


def run_child(config: str, folder: Path, repeat: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            config,
            "--dir",
            str(folder),
            "--repeat",
            str(repeat),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{config} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def _prepare_in_child(size: int, n_cal: int, folder: Path) -> dict[str, Any]:
    # The data are made in a child too, so that this process stays small (children forked
    # from a big parent would start with its memory mapped).
    out = subprocess.run(
        [sys.executable, __file__, "--prepare", str(size), str(n_cal), "--dir", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"preparing the frames failed:\n{out.stderr[-3000:]}")
    return json.loads((folder / "info.json").read_text())


def _print_calibration(results: dict[str, dict[str, Any]]) -> None:
    floor = results["floor"]["seconds"]
    mine_cal = results["mine_calibrate"]["seconds"]
    mine = mine_cal + results["mine_photometry"]["seconds"]
    plain = results["plain_calibrate_error"]["seconds"] + results["plain_photometry"]["seconds"]
    plain_default = results["plain_calibrate"]["seconds"] + results["plain_photometry"]["seconds"]
    peak_mine = max(
        results["mine_calibrate"]["peak_rss_mib"], results["mine_photometry"]["peak_rss_mib"]
    )
    peak_plain = max(
        results["plain_calibrate_error"]["peak_rss_mib"],
        results["plain_photometry"]["peak_rss_mib"],
    )
    print()
    print(
        f"per frame, calibration + photometry: followup {mine:.2f} s (peak {peak_mine:.0f} MiB); "
        f"plain {plain:.2f} s with ccd_process error=True (peak {peak_plain:.0f} MiB), "
        f"{plain_default:.2f} s with its defaults"
    )
    print(
        f"  speed-up: {plain / mine:.1f}x (like for like), {plain_default / mine:.1f}x (plain without error map)   [target >= 5x]"
    )
    print(
        f"  calibration: {mine_cal * 1e3:.0f} ms = {mine_cal / floor:.2f}x the bandwidth floor "
        f"((a - b) / c: {floor * 1e3:.0f} ms)   [target <= 3x], in the frame's own buffers as "
        "reduce_raw_frames does"
    )
    kept = results["mine_calibrate_kept"]["seconds"]
    print(
        f"    keeping the raw frame (all outputs new): {kept * 1e3:.0f} ms = {kept / floor:.2f}x; "
        f"masters prepared once per night in "
        f"{results['mine_calibrate']['prepare_seconds'] * 1e3:.0f} ms; one-off calibrate() "
        f"{results['mine_calibrate_oneoff']['seconds'] * 1e3:.0f} ms"
    )
    print(
        f"  overscan + trim: followup {results['mine_overscan']['seconds'] * 1e3:.0f} ms, ccdproc "
        f"subtract_overscan + trim_image {results['plain_overscan']['seconds'] * 1e3:.0f} ms"
    )


def _print_photometry(results: dict[str, dict[str, Any]]) -> None:
    print(
        f"  whole reduced frame measured from its .fits.fz: {results['mine_reduced_frame']['seconds']:.2f} s   [target < 3 s]"
    )
    mine_bkg, plain_bkg = results["mine_background"], results["plain_background"]
    print(
        f"  background mesh (64 px): followup {mine_bkg['seconds']:.2f} s, photutils Background2D "
        f"{plain_bkg['seconds']:.2f} s ({plain_bkg['seconds'] / mine_bkg['seconds']:.1f}x); "
        f"maps differ by {mine_bkg['difference_in_rms']:.3f} rms (median)"
    )
    det, dao, seg = (
        results[c] for c in ("mine_detection", "plain_detection_dao", "plain_detection_segments")
    )
    print(
        f"  detection (5 sigma): followup detect_sources {det['seconds']:.2f} s ({det['found']} found, "
        f"with aperture fluxes); Background2D + DAOStarFinder {dao['seconds']:.2f} s ({dao['found']}); "
        f"Background2D + SourceFinder {seg['seconds']:.2f} s ({seg['found']} segments)"
    )
    psf, plain_psf = results["mine_psf"], results["plain_psf"]
    print(
        f"  forced PSF photometry: one target followup {psf['target_seconds'] * 1e3:.1f} ms, "
        f"PSFPhotometry {plain_psf['target_seconds'] * 1e3:.1f} ms; {psf['stars']} reference "
        f"stars followup {psf['seconds']:.2f} s, PSFPhotometry {plain_psf['seconds']:.2f} s "
        f"(fluxes agree to {abs(plain_psf['flux_ratio'] - 1) * 100:.2f} %)"
    )


def _print_masters(results: dict[str, dict[str, Any]], n_cal: int) -> None:
    print(
        f"  masters ({n_cal} bias + {n_cal} dark + {n_cal} flat): followup {results['mine_masters']['seconds']:.1f} s "
        f"(peak {results['mine_masters']['peak_rss_mib']:.0f} MiB), ccdproc.combine defaults "
        f"{results['plain_masters']['seconds']:.1f} s (peak {results['plain_masters']['peak_rss_mib']:.0f} MiB), "
        f"ccdproc.combine clipped like ours {results['plain_masters_clipped']['seconds']:.1f} s "
        f"(peak {results['plain_masters_clipped']['peak_rss_mib']:.0f} MiB)"
    )
    print(
        f"  a night (sort {3 * n_cal} calibration frames, masters, calibrate and write one frame): "
        f"{results['mine_night']['seconds']:.1f} s (peak {results['mine_night']['peak_rss_mib']:.0f} MiB)"
    )
    if "mine_lacosmic" in results:
        mine, plain = results["mine_lacosmic"], results["plain_lacosmic"]
        print(
            f"  LACosmic (niter=2) on one frame: ccdproc.cosmicray_lacosmic {mine['seconds']:.1f} s "
            f"({mine['flagged']} px), astroscrappy directly {plain['seconds']:.1f} s "
            f"({plain['flagged']} px) (raw frames only; BANZAI frames carry the mask)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="2048x2048 frames, 3 calibration frames, fewer repeats"
    )
    parser.add_argument("--repeat", type=int, default=None, help="timing repeats per configuration")
    parser.add_argument(
        "--lacosmic", action="store_true", help="also time LACosmic on one frame (~15 s at 4k)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(Path(args.dir), args.prepare[0], args.prepare[1])
        return
    if args.child:
        print(json.dumps(child(args.child, Path(args.dir), args.repeat or 1)))
        return
    size = 2048 if args.quick else 4096
    n_cal = 3 if args.quick else 5
    repeat = args.repeat or (1 if args.quick else 3)
    folder = Path(tempfile.mkdtemp(prefix="followup-bench-frames-"))
    try:
        print(
            f"frames benchmark: {size}x{size} float32 frames, {n_cal} frames per calibration type, "
            f"{repeat} repeat(s), each configuration in a fresh process, {os.cpu_count()} CPUs"
        )
        info = _prepare_in_child(size, n_cal, folder)
        print(
            f"synthetic sky: reduced e91 frame rendered in {info['render_reduced_s']:.2f} s "
            f"({info['reduced_size_mb']:.1f} MB .fits.fz); raw frame {info['render_raw_median_s']:.2f} s (median)"
        )
        configs = [c for c in CONFIGS if args.lacosmic or not c.endswith("_lacosmic")]
        results = {}
        for config in configs:
            results[config] = run_child(config, folder, repeat)
            r = results[config]
            print(
                f"  {config:26s} {r['seconds'] * 1e3:9.1f} ms   peak RSS {r['peak_rss_mib']:7.0f} MiB "
                f"(inputs {r['rss_inputs_mib']:.0f} MiB)"
                + (f"   mag {r['mag']:.3f}" if r.get("mag") else ""),
                flush=True,
            )
        _print_calibration(results)
        _print_photometry(results)
        _print_masters(results, n_cal)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
