"""The HTML report: self-contained, escaped, accessible charts, rendered by headless Chromium."""

from __future__ import annotations

import http.server
import re
import shutil
import struct
import subprocess
import threading
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from modeltrace.drift.charts import Series, line_chart, paired_histogram, sparkline
from modeltrace.drift.html import render_index, render_model_page, trace_link_template
from modeltrace.drift.report import DriftReport, FeatureDrift

HOSTILE = '<script>alert("x")</script>&amp'
TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "00f067aa0ba902b74bf92f3577b34da6"
TRACE_TEMPLATE = "https://traces.example.com/trace/{trace_id}"


class _Collector(HTMLParser):
    """Every start tag with its attributes, the text per open tag path, parse errors."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[tuple[dict[str, str | None], str]] = []
        self._row: list[str] | None = None
        self.texts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "tr":
            self._row = []
            self._row_attrs = attributes
        if tag not in ("meta", "rect", "line", "circle", "path", "br"):
            self.stack.append((tag, attributes))

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append((self._row_attrs, " ".join(self._row)))
            self._row = None
        while self.stack:
            open_tag, _ = self.stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, data):
        self.texts.append(data)
        if self._row is not None:
            self._row.append(data)


def _parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    parser.close()
    return parser


def _report() -> dict:
    def feature(name, drifted, score, **extra):
        return FeatureDrift(
            name=name,
            kind="numeric",
            method="psi",
            score=score,
            threshold=0.2,
            drifted=drifted,
            p_value=None,
            n_reference=5000,
            n_current=800,
            **extra,
        )

    report = DriftReport(
        model="churn",
        version="3",
        window_start=1_700_000_000.0,
        window_end=1_700_003_600.0,
        generated_at=1_700_003_601.0,
        features=[
            feature("tenure", False, 0.03, missing_ratio=0.01, reference_missing_ratio=0.01),
            feature(
                "monthly_charges",
                True,
                0.61,
                exemplar_trace_ids=[TRACE_A, TRACE_B, "not-a-trace-id"],
                out_of_range_ratio=0.12,
            ),
            feature(HOSTILE, False, float("inf"), unseen_ratio=0.05),
        ],
        dataset_drift=False,
        drift_share=1 / 3,
        n_samples=800,
    )
    return report.to_dict()


def _page_data() -> dict:
    rng = np.random.default_rng(0)
    labels = [f"{a}\u2013{a + 10}" for a in range(0, 100, 10)]
    ref = rng.integers(50, 150, 10).tolist()
    return {
        "report": _report(),
        "histograms": {
            "monthly_charges": {
                "labels": labels,
                "reference": ref,
                "current": list(reversed(ref)),
            },
            "tenure": {"labels": labels, "reference": ref, "current": ref},
            HOSTILE: {"labels": [HOSTILE, "b"], "reference": [1, 2], "current": [2, 1]},
        },
        "history": {
            "monthly_charges": [0.02, 0.05, 0.04, 0.2, 0.45, 0.61],
            "tenure": [0.02, None, 0.03],
        },
        "performance": {
            "metric": "accuracy",
            "threshold": 0.85,
            "points": [
                {
                    "time": 1_700_000_000.0 + 3600 * i,
                    "realized": None if i > 6 else 0.92 - 0.02 * i,
                    "estimated": 0.91 - 0.015 * i,
                }
                for i in range(10)
            ],
            "latest": {
                "realized": {"accuracy": 0.8, "f1_macro": 0.77},
                "intervals": {"accuracy": {"low": 0.77, "high": 0.83, "method": "wilson"}},
                "label_coverage": 0.4,
                "n_labelled": 320,
                "slo": {"accuracy": {"threshold": 0.85, "direction": "min", "breached": True}},
                "estimated": {"metrics": {"accuracy": 0.78}, "limitation": "no concept shift"},
            },
        },
        "trace_url": TRACE_TEMPLATE,
    }


def _external_urls(parsed: _Collector, page: str) -> list[str]:
    urls = [
        value
        for _, attrs in parsed.tags
        for key, value in attrs.items()
        if key in ("src", "href", "srcset", "poster", "data", "action", "xlink:href")
        and value
        and not value.startswith("#")
    ]
    urls += re.findall(r"url\(([^)]*)\)|@import", page)
    return urls


def test_model_page_is_self_contained_and_escaped() -> None:
    page = render_model_page(_page_data())
    parsed = _parse(page)
    tags = [tag for tag, _ in parsed.tags]
    assert "script" not in tags
    assert "iframe" not in tags and "img" not in tags and "link" not in tags
    assert HOSTILE not in page
    assert "&lt;script&gt;" in page
    # every resource-like URL is either the link back to the index or a trace link
    urls = _external_urls(parsed, page)
    trace_links = [u for u in urls if u.startswith("https://traces.example.com/trace/")]
    assert sorted(trace_links) == sorted(
        f"https://traces.example.com/trace/{t}" for t in (TRACE_A, TRACE_B)
    )
    assert set(urls) - set(trace_links) == {"/"}
    assert all(
        "noopener" in (attrs.get("rel") or "")
        for tag, attrs in parsed.tags
        if tag == "a" and (attrs.get("href") or "").startswith("https:")
    )


def test_model_page_has_drifted_row_and_histogram() -> None:
    page = render_model_page(_page_data())
    parsed = _parse(page)
    drifted = [text for attrs, text in parsed.rows if attrs.get("class") == "drifted"]
    assert len(drifted) == 1
    assert "monthly_charges" in drifted[0]
    assert "0.61" in drifted[0] and "yes" in drifted[0] and "12.0%" in drifted[0]
    stable = [text for attrs, text in parsed.rows if attrs.get("class") == "stable"]
    assert any(HOSTILE in text and "\u221e" in text for text in stable)  # escaped, inf shown
    # the drifted feature comes first
    assert parsed.rows[1][1].strip().startswith("monthly_charges")
    sections = [attrs for tag, attrs in parsed.tags if tag == "section"]
    assert "drifted" in (sections[0].get("class") or "")
    titles = [t for t in parsed.texts if t.startswith("Reference vs current distribution of")]
    assert "Reference vs current distribution of monthly_charges" in titles
    assert f"Reference vs current distribution of {HOSTILE}" in titles
    svgs = [attrs for tag, attrs in parsed.tags if tag == "svg"]
    assert all(a.get("role") == "img" and a.get("aria-labelledby") for a in svgs)
    assert any("accuracy over time" in t for t in parsed.texts)
    assert "breached (0.85)" in page


def test_headline_counts_input_features_like_drift_share() -> None:
    data = _page_data()
    report = data["report"]
    report["features"] = [
        *report["features"],
        {**report["features"][0], "name": "__prediction__", "drifted": True},
        {**report["features"][0], "name": "__multivariate__", "method": "mmd", "drifted": True},
    ]
    inputs = [f for f in report["features"] if not f["name"].startswith("__")]
    report["n_evaluated"] = len(inputs)
    report["n_drifted"] = sum(f["drifted"] for f in inputs)
    text = " ".join(_parse(render_model_page(data)).texts)
    assert f"{report['n_drifted']} of {len(inputs)} features drifted" in text
    # without the counts (an older report), the page derives them the same way
    del report["n_evaluated"], report["n_drifted"]
    text = " ".join(_parse(render_model_page(data)).texts)
    assert f"{sum(f['drifted'] for f in inputs)} of {len(inputs)} features drifted" in text


def test_trace_links_need_a_safe_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELTRACE_TRACE_URL", "http://jaeger:16686/trace/{trace_id}")
    assert trace_link_template(None) == "http://jaeger:16686/trace/{trace_id}"
    assert trace_link_template("javascript:alert('{trace_id}')") is None
    assert trace_link_template("//evil.example/{trace_id}") is None
    assert trace_link_template("https://x.example/no-placeholder") is None
    assert trace_link_template("/ui/trace/{trace_id}") == "/ui/trace/{trace_id}"
    data = _page_data()
    data["trace_url"] = "javascript:alert('{trace_id}')"
    monkeypatch.delenv("MODELTRACE_TRACE_URL")
    parsed = _parse(render_model_page(data))
    assert not [a for tag, a in parsed.tags if tag == "a" and "trace" in (a.get("title") or "")]


def test_index_page_lists_models() -> None:
    page = render_index(
        {
            "models": [
                {"model": "churn", "version": "3", "samples": 800, "dataset_drift": True},
                {"model": "fraud/v2 <b>", "version": "1 2", "drift_share": 0.1},
            ],
            "generated_at": 1_700_000_000.0,
        }
    )
    parsed = _parse(page)
    hrefs = [a["href"] for tag, a in parsed.tags if tag == "a"]
    assert hrefs == ["models/churn/versions/3", "models/fraud%2Fv2%20%3Cb%3E/versions/1%202"]
    assert "<b>" not in page
    assert "2023-11-14 22:13" in page
    assert "No model" in render_index({"models": []})


def test_charts_are_escaped_and_scaled() -> None:
    spark = sparkline([0.1, None, 0.3, float("nan"), 0.5], title="a<b", threshold=0.2)
    assert "a&lt;b" in spark and "<b" not in spark.replace("<b>", "")
    assert spark.count("<path") == 3  # missing values split the line
    hist = paired_histogram(["x", "y"], [1, 3], [3, 1], title="t")
    heights = [
        float(h)
        for h in re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', hist)
    ]
    bars = heights[2:]  # the first two rects are the legend swatches
    assert bars[0] == pytest.approx(bars[3]) and bars[1] == pytest.approx(bars[2])
    assert bars[1] == pytest.approx(3 * bars[0], rel=0.01)
    with pytest.raises(ValueError, match="one entry per bin"):
        paired_histogram(["x"], [1, 2], [1, 2], title="t")
    line = line_chart([Series("r", [(0, 1.0), (10, None), (20, 0.5)])], title="perf")
    assert line.count("<circle") == 2


def _png_pixels(data: bytes) -> np.ndarray:
    """Decode an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium writes) to an array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0 and colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, -1)
    filters, rows = raw[:, 0], raw[:, 1:].astype(np.int32)
    out = np.zeros((height, width * channels), dtype=np.int32)
    prev = np.zeros(width * channels, dtype=np.int32)
    for y in range(height):
        line, kind = rows[y], filters[y]
        if kind == 0:
            cur = line.copy()
        elif kind == 2:
            cur = (line + prev) % 256
        elif kind == 1:
            cur = (np.cumsum(line.reshape(width, channels), axis=0) % 256).reshape(-1)
        else:  # Average (3) and Paeth (4) depend on the pixel to the left: plain ints
            filtered, above, rec = line.tolist(), prev.tolist(), [0] * (width * channels)
            for x in range(width * channels):
                a = rec[x - channels] if x >= channels else 0
                b = above[x]
                if kind == 3:
                    rec[x] = (filtered[x] + (a + b) // 2) & 255
                else:
                    c = above[x - channels] if x >= channels else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    rec[x] = (filtered[x] + pred) & 255
            cur = np.asarray(rec, dtype=np.int32)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, channels).astype(np.uint8)


class _RecordingProxy(http.server.BaseHTTPRequestHandler):
    seen: list[str]

    def _record(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(502)
        self.end_headers()

    do_GET = do_POST = do_CONNECT = do_HEAD = _record

    def log_message(self, format, *args):
        return


@pytest.mark.e2e
def test_chromium_renders_the_page_without_network(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed: apt-get install -y chromium (see .ci/run)"
    page = tmp_path / "report.html"
    page.write_text(render_model_page(_page_data()), encoding="utf-8")
    shot = tmp_path / "shot.png"
    # control: a page loading an outside image is seen by its recording proxy
    control = tmp_path / "control.html"
    control.write_text('<img src="http://assets.example.net/logo.png" alt="">', encoding="utf-8")
    runs = [
        _ProxiedChromium(chromium, control, tmp_path / "profile-c", tmp_path / "c.png"),
        _ProxiedChromium(chromium, page, tmp_path / "profile-p", shot),
    ]
    stderr = [run.wait() for run in runs][1]
    assert any("assets.example.net" in line for line in _page_requests(runs[0].seen))
    seen = runs[1].seen
    assert shot.exists(), stderr[-2000:]
    pixels = _png_pixels(shot.read_bytes())
    assert pixels.shape[:2] == (1600, 1200)
    rgb = pixels[..., :3].reshape(-1, 3)
    colours = np.unique(rgb, axis=0)
    assert colours.shape[0] > 50  # text, bars, lines: far from a blank page
    # the current-window orange of the histogram bars is on screen
    orange = np.array([0xE0, 0x7B, 0x24])
    assert np.any(np.all(np.abs(rgb.astype(int) - orange) <= 2, axis=1))
    assert _page_requests(seen) == []
    # the background colour dominates: the decoder reads the pixels right
    values, counts = np.unique(rgb, axis=0, return_counts=True)
    assert values[counts.argmax()].tolist() == [0xFA, 0xFB, 0xFC]


def _page_requests(seen: list[str]) -> list[str]:
    """Requests not made by Chromium itself (its update/time/account services)."""
    own = re.compile(r"^\S+ (https?://)?[a-z0-9.-]*\.(google\.com|googleapis\.com|gvt1\.com)[:/]")
    return [line for line in seen if not own.match(line)]


class _ProxiedChromium:
    """One headless Chromium run whose network traffic goes through a recording proxy."""

    def __init__(self, chromium: str, page: Path, workdir: Path, shot: Path) -> None:
        self.seen: list[str] = []
        handler = type("Proxy", (_RecordingProxy,), {"seen": self.seen})
        self.proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.proxy.serve_forever, daemon=True).start()
        self.process = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                # every request the page could make goes through the recording proxy
                f"--proxy-server=http://127.0.0.1:{self.proxy.server_address[1]}",
                "--proxy-bypass-list=<-loopback>",
                f"--user-data-dir={workdir}",
                f"--screenshot={shot}",
                "--window-size=1200,1600",
                page.as_uri(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait(self) -> str:
        """Wait for the browser to exit; its stderr (for failure messages)."""
        try:
            _, stderr = self.process.communicate(timeout=90)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.proxy.shutdown()
            self.proxy.server_close()
        return stderr.decode(errors="replace")
