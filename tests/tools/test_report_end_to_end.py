"""The report on generated data run through the real batch job: the seeds come back out.

H1 2016 + H1 2017 at 2% of the published volume, and the years 2020 + 2021 at 0.1%, each pair
generated, ingested by `pipelines.batch` into one output root, then reported by
`python -m tools.report` as a user runs it. Slow: about a minute for both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pytest

from schemas.catalogue import CHANNEL_NAMES, load_catalogue
from schemas.enums import Channel
from tests.pipelines.helpers import run_batch
from tests.samples import TEST_KEY
from tools.generate import PROFILES, PUBLISHED, generate
from tools.report.command import main
from tools.report.figures import lookup

pytestmark = pytest.mark.slow
H1_SCALE, FY_SCALE = 0.02, 0.001
P, M = Channel.PORTAL.value, Channel.MOBILE_APP.value


on_demand = pytest.mark.skipif(
    not os.environ.get("REPORT_FULL_YEARS"),
    reason="on demand: REPORT_FULL_YEARS=1 runs 2020 and 2021 at the published volumes "
    "(about 6.3 million events through the batch job; minutes, not seconds)",
)


class Built(NamedTuple):
    out: Path
    report: Path
    fig: dict[str, Any]
    truth: dict[str, dict[str, Any]]  # the generator's ground truth, per profile


def _build(root: Path, profiles: list[str], scale: float, period: str, compare: str) -> Built:
    truth = {}
    for profile in profiles:
        # Invalid lines and redeliveries come on top of the valid events: the report must show
        # rejected events, and they must change none of the payment figures.
        config = replace(PROFILES[profile], scale=scale, invalid_rate=0.005, duplicate_rate=0.002)
        truth[profile] = generate(config, str(root / "landing" / profile))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAYMENTS_PSEUDONYM_KEY", TEST_KEY.decode())
        # Two workers: over some 1,100 or 2,200 small partitions they save a third of the time.
        run_batch(str(root / "landing" / "*" / "*" / "*.jsonl"), root / "out", workers=2)
    argv = ["--output", str(root / "out"), "--period", period, "--compare", compare]
    assert main([*argv, "--out", str(root / "report")]) == 0
    fig = json.loads((root / "report" / "figures.json").read_text(encoding="utf-8"))
    return Built(root / "out", root / "report", fig, truth)


@pytest.fixture(scope="module")
def h1(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _build(tmp_path_factory.mktemp("h1"), ["h1-2016", "h1-2017"], H1_SCALE, "2017-H1",
                  "2016-H1")  # fmt: skip


@pytest.fixture(scope="module")
def fy(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _build(tmp_path_factory.mktemp("fy"), ["fy-2020", "fy-2021"], FY_SCALE, "2021", "2020")


@pytest.fixture(scope="module")
def fy_full(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _build(tmp_path_factory.mktemp("fy-full"), ["fy-2020", "fy-2021"], 1.0, "2021",
                  "2020")  # fmt: skip


def _growth(fig: dict[str, Any], channel: str, what: str) -> float:
    return float(fig["channels"][channel]["growth"][f"{what}_pct"])


def test_h1_growth_is_the_seeds_within_two_points(h1: Built) -> None:
    assert _growth(h1.fig, P, "payments") == pytest.approx(35, abs=2)
    assert _growth(h1.fig, M, "amount") == pytest.approx(133, abs=2)
    assert _growth(h1.fig, "all", "payments") == pytest.approx(42, abs=2)
    assert _growth(h1.fig, "all", "amount") == pytest.approx(62, abs=2)


@pytest.mark.parametrize("which", ["fy", pytest.param("fy_full", marks=on_demand)])
def test_year_growth_is_the_seeds_within_two_points(
    which: str, request: pytest.FixtureRequest
) -> None:
    fy: Built = request.getfixturevalue(which)
    assert _growth(fy.fig, "all", "payments") == pytest.approx(65, abs=2)
    assert _growth(fy.fig, "all", "amount") == pytest.approx(116, abs=2)
    assert _growth(fy.fig, M, "payments") == pytest.approx(84, abs=2)
    assert _growth(fy.fig, M, "amount") == pytest.approx(98, abs=2)


@pytest.mark.parametrize(
    ("which", "current", "earlier", "scale"),
    [
        ("h1", "h1-2017", "h1-2016", H1_SCALE),
        ("fy", "fy-2021", "fy-2020", FY_SCALE),
        pytest.param("fy_full", "fy-2021", "fy-2020", 1.0, marks=on_demand),
    ],
)
def test_counts_and_amounts_are_the_seeds_within_two_percent(
    which: str, current: str, earlier: str, scale: float, request: pytest.FixtureRequest
) -> None:
    built: Built = request.getfixturevalue(which)
    for side, profile in (("current", current), ("compare", earlier)):
        for channel, (count, fils) in PUBLISHED[profile].payments.items():
            got = built.fig["channels"][channel.value][side]
            assert got["payments"] == pytest.approx(count * scale, rel=0.02), (profile, channel)
            expected_bhd = Decimal(fils) / 1000 * Decimal(str(scale))
            assert Decimal(got["amount"]) == pytest.approx(expected_bhd, rel=Decimal("0.02"))


def test_a_period_with_no_payment_is_reported_with_a_warning(
    h1: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--output", str(h1.out), "--period", "2018-Q1", "--compare", "2017-Q1"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert "warning: no committed payment in 2018-Q1" in capsys.readouterr().err
    fig = json.loads((tmp_path / "figures.json").read_text(encoding="utf-8"))
    assert fig["channels"]["all"]["growth"]["payments_pct"] == -100.0


def test_figures_equal_the_aggregates_and_the_generators_ground_truth(h1: Built) -> None:
    """figures.json against DuckDB over the aggregate files (one run: one version a month) and
    against what the generator wrote, to the fils."""
    glob = str(h1.out / "aggregates" / "by_status" / "**" / "*.parquet")
    rows = duckdb.sql(
        f"SELECT channel, year(event_date) AS y, sum(payments), sum(amount) "
        f"FROM read_parquet('{glob}') WHERE status = 'SUCCESS' GROUP BY ALL"
    ).fetchall()
    side = {2017: "current", 2016: "compare"}
    for channel, year, payments, amount in rows:
        got = h1.fig["channels"][channel][side[year]]
        assert (got["payments"], Decimal(got["amount"])) == (payments, amount)
        truth = h1.truth[f"h1-{year}"]["by_channel_status"][channel]["SUCCESS"]
        assert (got["payments"], got["amount"]) == (truth["count"], truth["amount"])
    refunded = h1.truth["h1-2017"]["by_channel_status"][P]["REFUNDED"]
    got = h1.fig["outcomes"]["current"][P]["REFUNDED"]
    assert (got["payments"], got["amount"]) == (refunded["count"], refunded["amount"])
    invalid = sum(t["invalid_lines"] for t in h1.truth.values())
    assert h1.fig["rejected"]["total"] == invalid


class _Page(HTMLParser):
    """The numbers of a page (`<data>`), its visible text, its references, `<html>`'s attrs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.numbers: list[tuple[str, str, str]] = []  # key, value, text
        self.text: list[str] = []  # everything a reader sees, in order
        self.bare: list[str] = []  # what a reader sees outside the numbers
        self.codes: list[str] = []  # identifiers (`<code>`), such as INVALID_UTF8
        self.refs: list[str] = []
        self.root: dict[str, str | None] = {}
        self._number: list[str] | None = None
        self._hidden = self._code = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "html":
            self.root = named
        if tag in ("style", "script"):
            self._hidden += 1
        self._code += tag == "code"
        if tag == "data":
            self._number = [str(named["data-key"]), str(named["value"]), ""]
        self.refs += [str(v) for k, v in attrs if k in ("src", "href", "srcset", "action")]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._hidden -= 1
        self._code -= tag == "code"
        if tag == "data" and self._number is not None:
            key, value, text = self._number
            self.numbers.append((key, value, text))
            self._number = None

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self.text.append(data)
        if self._code:
            self.codes.append(data)
        elif self._number is not None:
            self._number[2] += data
        else:
            self.bare.append(data)


def _read(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_every_number_on_a_page_is_its_figure_in_figures_json(h1: Built, lang: str) -> None:
    page = _read(h1.report / f"report.{lang}.html")
    assert len(page.numbers) > 100
    for key, value, text in page.numbers:
        figure = lookup(h1.fig, key)
        assert Decimal(value) == Decimal(str(figure)), key
        assert Decimal(text.replace(",", "").rstrip("%")) == Decimal(str(figure)), key
    digits = [text for text in page.bare if re.search(r"\d", text)]
    assert not digits, "digits outside the figures"
    assert set(page.codes) == {reason["code"] for reason in h1.fig["rejected"]["by_reason"]}
    said = "".join(page.text)
    for sentence in h1.fig["sentences"][lang]:
        assert sentence in said


def test_the_arabic_page_is_right_to_left_with_the_catalogues_names(h1: Built) -> None:
    page = _read(h1.report / "report.ar.html")
    assert (page.root.get("dir"), page.root.get("lang")) == ("rtl", "ar")
    text = "".join(page.text)
    for channel in Channel:
        assert CHANNEL_NAMES[channel][1] in text
    top = h1.fig["top_services"]["kiosk"][0]
    assert top["name_ar"] == load_catalogue().get(top["code"]).name_ar  # type: ignore[union-attr]
    assert top["name_ar"] in text
    assert _read(h1.report / "report.en.html").root.get("dir") == "ltr"


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_a_page_refers_to_nothing_outside_itself(h1: Built, lang: str) -> None:
    html = (h1.report / f"report.{lang}.html").read_text(encoding="utf-8")
    page = _read(h1.report / f"report.{lang}.html")
    assert page.refs
    assert all(ref.startswith("data:image/png;base64,") for ref in page.refs)
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import", html, re.I)
    fonts = re.findall(r"url\(([^)]*)\)", html)
    assert len(fonts) == 2  # the font, regular and bold, inline
    assert all(url.startswith("data:font/ttf;base64,") for url in fonts)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does): the "
    "report pages were not rendered by a browser",
)
# The browser's own background requests (time, accounts, dictionaries) have no origin; a
# page's, from a file:// page, have the opaque origin "null".
_BROWSER_ITSELF = "not an origin"


def _chromium(page: Path, work: Path, *args: str) -> tuple[str, list[str]]:
    """Run headless chromium on a page with every request sent to a closed local port (nothing
    can leave the machine); its stdout, and the http(s)/ws URLs the page itself asked for."""
    netlog = work / "netlog.json"
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", f"--user-data-dir={work / 'profile'}",
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
        f"--log-net-log={netlog}", *args, page.as_uri(),
    ]  # fmt: skip
    ran = subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)
    text = netlog.read_text(encoding="utf-8").rstrip()
    log = json.loads(text if text.endswith("}") else text.rstrip(",") + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    asked = [
        str(event["params"]["url"])
        for event in log["events"]
        if event["type"] == start
        and event.get("params", {}).get("initiator", _BROWSER_ITSELF) != _BROWSER_ITSELF
    ]
    return ran.stdout, [url for url in asked if not url.startswith(("file:", "data:"))]


def _not_blank(png: Path) -> float:
    """The share of the screenshot's pixels that are not the page's white."""
    import matplotlib.image

    pixels = matplotlib.image.imread(str(png))[..., :3]
    return float((pixels.min(axis=2) < 0.9).mean())


@needs_chromium
def test_the_net_catches_a_page_that_asks_for_the_network(tmp_path: Path) -> None:
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://example.org/x.png">x</body></html>')
    _, asked = _chromium(page, tmp_path, "--screenshot=" + str(tmp_path / "leaky.png"))
    assert asked == ["http://example.org/x.png"]


@needs_chromium
@pytest.mark.parametrize("lang", ["en", "ar"])
def test_a_browser_renders_a_page_offline(h1: Built, lang: str, tmp_path: Path) -> None:
    shot = tmp_path / f"report.{lang}.png"
    page = h1.report / f"report.{lang}.html"
    _, asked = _chromium(page, tmp_path, "--window-size=1280,2400", f"--screenshot={shot}")
    assert asked == []
    assert _not_blank(shot) > 0.05  # text, tables and charts, not an empty white page
    dom, asked = _chromium(page, tmp_path / "dom", "--dump-dom")
    assert asked == []
    expected = '<html lang="ar" dir="rtl">' if lang == "ar" else '<html lang="en" dir="ltr">'
    assert expected in dom.split("<head>")[0]
    assert "<img" in dom
