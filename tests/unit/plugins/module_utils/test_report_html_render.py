# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""report.html as a browser shows it: rendered by headless Chromium (Debian's ``chromium``).

`make test` installs it (target browser); without it these tests fail.
"""

import datetime
import html.parser
import shutil
import socket
import struct
import subprocess
import threading
import zlib

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils import report as rpt

T0 = datetime.datetime(2026, 11, 22, 12, 0, 0, tzinfo=datetime.timezone.utc)
WINDOW = (1400, 900)
# Chromium's own service traffic (clock, component updater, sign-in), made even for a blank page;
# exact hosts, so a page asset from e.g. fonts.googleapis.com still counts.
CHROMIUM_SERVICE_HOSTS = frozenset((
    "clients2.google.com", "update.googleapis.com", "accounts.google.com", "clientservices.googleapis.com",
    "redirector.gvt1.com", "optimizationguide-pa.googleapis.com", "content-autofill.googleapis.com",
    "safebrowsingohttpgateway.googleapis.com", "edgedl.me.gvt1.com",
))
CHROMIUM_SERVICE_DOMAINS = (".google.com", ".googleapis.com", ".gvt1.com", ".gstatic.com")
CLUSTERS = (("prod-eu-1", "succeeded"), ("prod-us-2", "partially_failed"), ("prod-ap-3", "failed"))


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


def cluster_result(name, verdict, end):
    return {
        "name": name,
        "labels": {"env": "prod"},
        "verdict": verdict,
        "phase": {"succeeded": "Completed", "partially_failed": "PartiallyFailed", "failed": "Failed"}[verdict],
        "object": {"kind": "Backup", "namespace": "velero", "name": "nightly-" + name},
        "location": "default",
        "items": {"total": 40, "done": 40 if verdict == "succeeded" else 12},
        "reason": None if verdict == "succeeded" else "%s: see errors" % verdict,
        "errors": [] if verdict == "succeeded" else ["pod shop/web-0 failed"],
        "started": at(0),
        "finished": at(end),
        "timeline": [
            {"phase": "New", "at": at(0)},
            {"phase": "InProgress", "at": at(2)},
            {"phase": "Finalizing", "at": at(end - 3)},
        ],
    }


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium")
    assert path, "Debian's chromium is not installed: `make test` installs it (make browser)"
    return path


class ProxyRecorder:
    """A proxy that only records: every request Chromium makes over the network lands here."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.requests = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn = self.server.accept()[0]
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.requests.append(conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def page_requests(self):
        """Requests other than Chromium's own service traffic, as 'METHOD url'."""
        page = []
        for line in self.requests:
            if not line.strip():  # a connection Chromium opened ahead (preconnect) and closed unused: nothing fetched
                continue
            method, target = (line.split(" ") + ["", ""])[:2]
            host = target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
            # Chromium's own service traffic goes to Google's domains (the host list grows between
            # releases); the report references none of them, so anything else is the page's.
            if host not in CHROMIUM_SERVICE_HOSTS and not host.endswith(CHROMIUM_SERVICE_DOMAINS):
                page.append("%s %s" % (method, target))
        return page

    def close(self):
        self.server.close()
        self.thread.join(5)


def run_chromium(binary, tmp_path, url, proxy_port, *mode):
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--hide-scrollbars",
        "--user-data-dir=%s" % (tmp_path / "profile"),
        "--proxy-server=http://127.0.0.1:%d" % proxy_port, "--proxy-bypass-list=<-loopback>",
        "--window-size=%d,%d" % WINDOW,
    ] + list(mode) + [url]
    # the timeout only stops a hung browser; nothing is asserted about time
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


class Element:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, dict(attrs), parent, [], ""

    def iter(self, tag=None):
        if tag is None or self.tag == tag:
            yield self
        for child in self.children:
            yield from child.iter(tag)

    def all_text(self):
        return (self.text + "".join(child.all_text() for child in self.children)).strip()


class DomBuilder(html.parser.HTMLParser):
    """Tree of the serialised DOM (stdlib only); void elements never get children."""
    VOID = {"meta", "link", "br", "hr", "img", "input", "source", "area", "base", "col", "embed", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        element = Element(tag, attrs, self.current)
        self.current.children.append(element)
        if tag not in self.VOID:
            self.current = element

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Element(tag, attrs, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.text += data


def png_pixels(path):
    """(width, height, rows of RGBA bytes) of an 8-bit RGB/RGBA non-interlaced PNG, stdlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour_type, interlace = header[:4] + header[6:]
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    channels = 4 if colour_type == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for index in range(height):
        start = index * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(channels, stride):
                row[i] = (row[i] + row[i - channels]) & 0xFF
        elif kind == 2:
            row = bytearray((a + b) & 0xFF for a, b in zip(row, previous))
        elif kind == 3:
            for i in range(stride):
                left = row[i - channels] if i >= channels else 0
                row[i] = (row[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = row[i - channels] if i >= channels else 0
                b, c = previous[i], previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(row))
        previous = row
    return width, height, channels, rows


@pytest.fixture(scope="module")
def rendered(chromium, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("html_render")
    report = rpt.build_report(
        "backup", "nightly",
        [cluster_result(name, verdict, end) for (name, verdict), end in zip(CLUSTERS, (20, 45, 110))],
    )
    page = rpt.write_report(report, str(tmp_path / "out"), ["html"])["html"]
    url = "file://" + page
    proxy = ProxyRecorder()
    try:
        dom = run_chromium(chromium, tmp_path, url, proxy.port, "--dump-dom")
        screenshot = tmp_path / "report.png"
        run_chromium(chromium, tmp_path, url, proxy.port, "--screenshot=%s" % screenshot)
    finally:
        proxy.close()
    builder = DomBuilder()
    builder.feed(dom)
    builder.close()
    return {"dom": builder.root, "html": dom, "screenshot": screenshot, "requests": proxy.page_requests()}


def test_rendered_table_has_one_row_per_cluster_with_its_verdict(rendered):
    tables = list(rendered["dom"].iter("table"))
    assert len(tables) == 1
    headers = [th.all_text() for th in tables[0].iter("th")]
    rows = [[td.all_text() for td in tr.iter("td")] for body in tables[0].iter("tbody") for tr in body.iter("tr")]
    shown = [(row[headers.index("Cluster")], row[headers.index("Verdict")]) for row in rows]
    assert shown == list(CLUSTERS)


def test_rendered_timeline_has_one_lane_per_cluster(rendered):
    svgs = list(rendered["dom"].iter("svg"))
    assert len(svgs) == 1
    lanes = list(svgs[0].iter("g"))
    lanes = [lane for lane in lanes if lane.attrs.get("class") == "lane"]
    assert [lane.attrs.get("data-cluster") for lane in lanes] == [cluster[0] for cluster in CLUSTERS]
    for lane in lanes:  # each lane draws its three phases
        titles = [title.all_text() for title in lane.iter("title")]
        assert [title.split(":")[1].split(" for ")[0].strip() for title in titles] == ["New", "InProgress", "Finalizing"]


def test_page_loads_no_external_resources(rendered):
    for element in rendered["dom"].iter():
        for name, value in element.attrs.items():
            if name in ("src", "href", "xlink:href", "action", "poster", "data") and value:
                assert not value.lower().lstrip().startswith(("http:", "https:", "//")), (element.tag, name, value)
    assert "url(http" not in rendered["html"].replace(" ", "").lower()
    assert not list(rendered["dom"].iter("script")) and not list(rendered["dom"].iter("link"))
    # and Chromium really fetched nothing over the network while rendering
    assert rendered["requests"] == []


def test_screenshot_shows_the_page_in_verdict_colours(rendered):
    screenshot = rendered["screenshot"]
    assert screenshot.stat().st_size > 10000
    width, height, channels, rows = png_pixels(screenshot)
    assert (width, height) == WINDOW
    colours = set()
    for row in rows:
        colours.update(row[i:i + 3] for i in range(0, len(row), channels))
    assert len(colours) > 50  # text, badges and bars, not a blank page
    # each verdict's row tint is visible (see report._VERDICT_COLOURS)
    for verdict in ("succeeded", "partially_failed", "failed"):
        tint = bytes.fromhex(rpt._VERDICT_COLOURS[verdict][1].lstrip("#"))
        assert tint in colours, verdict
