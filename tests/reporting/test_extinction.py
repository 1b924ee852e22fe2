"""Galactic extinction from IRSA's dust service, astroquery mocked at requests.Session."""

from __future__ import annotations

import pytest
import requests

from followup.reporting.extinction import Extinction, query_extinction


def _section(desc: str, stats: str) -> str:
    return f"<result><desc>{desc}</desc><data><image>x.fits</image></data><statistics>{stats}</statistics></result>"


def _dust_answer(sandf: float, sfd: float) -> str:
    """An answer in the service's XML layout (E(B-V), 100 micron and temperature sections)."""
    ref = "<refCoordinate>150.1 -20.6 equ J2000</refCoordinate>"
    ebv = (
        f"<refPixelValueSandF>{sandf} (mag)</refPixelValueSandF>"
        f"<refPixelValueSFD>{sfd} (mag)</refPixelValueSFD>{ref}"
        + "".join(
            f"<{k}SandF>0.9 (mag)</{k}SandF><{k}SFD>1.0 (mag)</{k}SFD>"
            for k in ("meanValue", "std", "maxValue", "minValue")
        )
    )
    plain = ref + "".join(
        f"<{k}>1.0 (K)</{k}>" for k in ("meanValue", "std", "maxValue", "minValue")
    )
    return (
        '<?xml version="1.0"?><results status="ok"><input><objname>150.1 -20.6 equ J2000</objname>'
        "<regSize>5.0 deg</regSize></input>"
        + _section("E(B-V) Reddening", ebv).replace(
            "<data><image>x.fits</image></data>",
            "<data><image>x.fits</image><table>t.tbl</table></data>",
        )
        + _section("100 Micron Emission", f"<refPixelValue>2.0 (MJy/sr)</refPixelValue>{plain}")
        + _section("Dust Temperature", f"<refPixelValue>17.6 (K)</refPixelValue>{plain}")
        + "</results>"
    )


@pytest.fixture
def dust(monkeypatch):
    calls: list[tuple[str, str, dict]] = []

    def request(self, method, url, **kwargs):
        calls.append((method, url, kwargs.get("data") or {}))
        response = requests.Response()
        response.status_code = 200
        response._content = _dust_answer(0.0412, 0.0479).encode()
        response.url = url
        return response

    monkeypatch.setattr(requests.Session, "request", request)
    return calls


def test_reddening_is_the_position_pixel_of_the_recalibrated_map(dust):
    ext = query_extinction(150.1, -20.6, url="http://127.0.0.1:9/DUST/")
    assert ext.ebv == pytest.approx(0.0412)  # SandF at the pixel, not the 5-degree mean
    method, url, data = dust[0]
    assert method == "POST" and url == "http://127.0.0.1:9/DUST/"
    assert "150.1" in data["locstr"] and "-20.6" in data["locstr"]


def test_a_per_filter():
    ext = Extinction(ebv=0.1)
    assert ext.a_band("rp") == pytest.approx(0.2285)
    assert ext.a_band("gp") == pytest.approx(0.3303)
    assert ext.a_band("w") is None
    assert ext.text(["gp", "w"]) == "E(B-V) = 0.100 mag (A_g = 0.33)"


def test_the_sandbox_stand_in_answers_astroquery(served):
    from sandbox import irsa_dust

    url = served(irsa_dust.create_app())
    ext = query_extinction(150.1, -20.6, url=f"{url}{irsa_dust.DUST_PATH}")
    assert ext.ebv == pytest.approx(0.86 * irsa_dust.ebv_sfd(150.1, -20.6), abs=2e-4)
