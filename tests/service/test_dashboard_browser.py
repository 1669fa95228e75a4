"""The dashboard in Debian's Chromium (Playwright) against a live server on loopback.

The server runs ``examples/systems/ipower.yaml`` with a uniform-price market (SimBench rural LV
feeder with geodata, a DSO whose forecast check turns some evening intervals amber), on wall
time, in a thread of this process; participants trade through the signed API while the page is
open.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from lemgrid.client import MarketClient
from lemgrid.ledger.identity import generate_key, private_key_pem
from lemgrid.ledger.proofs import check_proof
from lemgrid.service.app import create_app
from lemgrid.service.engine import load_market

from ._live import ThreadServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
IPOWER = ROOT / "examples" / "systems" / "ipower.yaml"


class Live:
    """A uvicorn server in a thread, its operator and two participants (alice sells, bob buys)."""

    def __init__(self, tmp: Path) -> None:
        # iPower's own design is ``none`` (no local market, so no orders): the same feeder, DSO
        # and participants with a uniform-price market, so that trades reach the page.
        text = IPOWER.read_text(encoding="utf-8")
        assert "market: {design: none}" in text
        scenario = tmp / "ipower-uniform.yaml"
        scenario.write_text(text.replace("market: {design: none}", "market: {design: uniform}"),
                            encoding="utf-8")
        self.spec = load_market(str(scenario))
        self.operator_key = generate_key()
        self.app = create_app(f"sqlite:///{tmp / 'market.db'}", self.operator_key, spec=self.spec)
        self.served = ThreadServer(self.app)
        self.url = self.served.url
        self.operator = MarketClient(self.url, self.operator_key)
        self.operator.participant = "operator"
        meters = sorted(self.spec.meters)
        self.names = {"alice": meters[0], "bob": meters[1]}
        self.keys = {}
        self.clients = {}
        for name, meter in self.names.items():
            key = generate_key()
            c = MarketClient(self.url, key)
            assert c.register(meter, meter).status_code == 201
            assert self.operator.request("POST", f"/identities/{meter}/approve").status_code == 200
            self.keys[name], self.clients[name] = key, c

    def session(self, market_id: str, interval: int, sell_wh: int, buy_wh: int) -> None:
        """A session with one sell order of alice and one buy order of bob, cleared."""
        r = self.operator.request("POST", "/capabilities", {
            "participant": self.names["alice"], "interval": interval, "sellable_wh": sell_wh})
        assert r.status_code == 201, r.text
        gate_ms = time.time_ns() // 1_000_000 + 1500
        r = self.operator.request("POST", "/sessions", {
            "market_id": market_id, "interval": interval, "gate_ms": gate_ms})
        assert r.status_code == 201, r.text
        for name, side, wh, price in (("alice", "sell", sell_wh, 90), ("bob", "buy", buy_wh, 210)):
            r = self.clients[name].submit_order(market_id, order_id=f"{market_id}-{name}",
                                                side=side, quantity_wh=wh,
                                                price_meur_per_kwh=price, interval=interval)
            assert r.status_code == 201, r.text
        time.sleep(max(0.0, gate_ms / 1000 - time.time()) + 0.05)
        r = self.operator.request("POST", "/admin/tick")
        assert market_id in r.json()["settled"], r.text

    def stop(self) -> None:
        self.served.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = Live(tmp_path_factory.mktemp("dashboard"))
    server.session("s68", 68, 2000, 1500)  # the evening: amber on this feeder
    server.session("s30", 30, 800, 1200)
    r = httpx.get(server.url + "/dashboard/api/grid", timeout=300)  # computed once, then cached
    assert r.status_code == 200, r.text
    yield server
    server.stop()


@pytest.fixture
def page(browser, live):
    context = browser.new_context(viewport={"width": 1280, "height": 1800})
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(live.url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    yield page
    context.close()


def fills(page) -> list[str]:
    return page.eval_on_selector_all("#feeder circle", "cs => cs.map(c => c.getAttribute('fill'))")


def sign_in(page, key) -> None:
    page.fill("#key-pem", private_key_pem(key).decode())
    page.click("#sign-in")
    page.wait_for_function("document.getElementById('who').textContent.startsWith('signed in')",
                           timeout=10_000)


def test_the_dashboard_loads_without_console_errors(page, live):
    grid = httpx.get(live.url + "/dashboard/api/grid").json()
    assert page.locator("#feeder circle").count() == len(grid["buses"]) == 97
    assert page.locator("#feeder line").count() == len(grid["branches"])
    assert page.text_content("#layout-source").startswith("the grid's geodata")
    assert page.text_content("#feed-state") == "connected"
    assert page.locator("#trades-table tbody tr").count() == 2
    lights = page.locator("#lights .light")
    assert lights.count() == 96  # one cell per interval of the day
    assert page.get_attribute("#lights .light:nth-child(69)", "class") == "light amber"
    assert page.get_attribute("#lights .light:nth-child(31)", "class") == "light green"
    assert page.get_attribute("#lights .light:nth-child(12)", "class") == "light none"
    assert page.errors == []


def test_moving_the_slider_changes_the_grid_colours(page, live):
    slider = page.locator("#interval-slider")
    slider.focus()
    page.keyboard.press("Home")  # keyboard use of the slider
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    night = fills(page)
    assert "interval 10)" in page.text_content("#interval-label")
    for _ in range(58):
        page.keyboard.press("ArrowRight")
    evening = fills(page)
    assert "interval 68)" in page.text_content("#interval-label")
    assert sum(a != b for a, b in zip(night, evening)) > 10
    # the colours follow the power flow: the lowest evening bus is drawn bluer than at night
    vm = np.array(httpx.get(live.url + "/dashboard/api/grid").json()["vm_pu"], dtype=float)
    low = int(np.nanargmin(vm[68]))
    assert vm[68, low] < 0.92
    blue = [int(c[5:7], 16) - int(c[3:5], 16) for c in (night[low], evening[low])]
    assert blue[1] > blue[0]
    assert "Lowest voltage" in page.text_content("#grid-summary")
    assert page.errors == []


def test_a_trade_submitted_through_the_api_shows_within_2_s(page, live):
    assert page.locator("#trades-table", has_text="s45-t0").count() == 0
    live.session("s45", 45, 1000, 1000)
    t0 = time.monotonic()
    page.wait_for_selector("#trades-table td:text-is('s45-t0')", timeout=2000)
    shown_s = time.monotonic() - t0
    print(f"trade shown {shown_s:.2f} s after its session cleared")
    assert shown_s < 2.0
    assert page.errors == []


def test_a_participant_sees_only_its_own_statement(page, live):
    sign_in(page, live.keys["alice"])
    alice = live.names["alice"]
    page.wait_for_selector("#statements-table tbody tr")
    rows = page.eval_on_selector_all(
        "#statements-table tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert rows and {r[2] for r in rows} == {alice}
    own = sum(live.clients["alice"].get(f"/markets/{r[0]}/statements/{alice}")
              .json()["amount_ueur"] for r in rows)
    assert page.text_content("#me-total") == f"{own / 1e6:.2f}" and own > 0
    # bob's statement is nowhere in alice's page, and the API refuses it to her
    bob = live.names["bob"]
    cells = page.eval_on_selector_all("#me-view td", "cs => cs.map(c => c.textContent)")
    assert alice in cells and bob not in cells
    assert live.clients["alice"].get(f"/markets/s68/statements/{bob}").status_code == 403
    assert page.is_hidden("#operator-view")
    assert page.errors == []


def test_a_receipt_verifies_in_the_page_and_a_tampered_one_does_not(page, live):
    sign_in(page, live.keys["bob"])
    button = page.locator("#orders-table button").first
    seq = button.get_attribute("data-seq")
    button.click()
    out = page.locator(f"#receipt-{seq}")
    page.wait_for_selector(f"#receipt-{seq}[data-ok]")
    assert out.get_attribute("data-ok") == "true", out.text_content()
    assert "checkpoint signature verified" in out.text_content()

    def tamper(route):  # the server (or a man in the middle) changes the quantity of the order
        doc = route.fetch().json()
        doc["entry"]["payload"]["quantity_wh"] += 1
        route.fulfill(json=doc)

    page.route("**/ledger/inclusion/*", tamper)
    button.click()
    page.wait_for_function(f"document.getElementById('receipt-{seq}').dataset.ok === 'false'")
    assert "NOT in the checkpointed tree" in out.text_content()
    assert page.errors == []


def _tampered(doc: dict) -> list[dict]:
    """Copies of an inclusion proof, each with one thing changed."""
    out = []
    for change in ("entry", "path", "index", "root", "size"):
        d = json.loads(json.dumps(doc))
        if change == "entry":
            d["entry"]["sig"] = "00" * 64
        elif change == "path" and d["audit_path"]:
            d["audit_path"][0] = "00" * 32
        elif change == "index":
            d["leaf_index"] += 1
        elif change == "root":
            d["checkpoint"]["payload"]["root_hash"] = "ab" * 32
        elif change == "size":
            d["tree_size"] -= 1
        out.append(d)
    return out


def test_the_page_verifier_agrees_with_the_python_one(page, live):
    c = live.clients["alice"]
    published = c.get("/ledger/checkpoints").json()
    log_key = page.get_attribute("body", "data-log-key")
    docs = []
    for seq in range(0, live.app.state.market.ledger.size, 3):
        r = c.get(f"/ledger/inclusion/{seq}")
        if r.status_code == 200:
            docs.append(r.json())
    assert len(docs) > 5
    cases = [d for doc in docs[:4] for d in (doc, *_tampered(doc))] + docs[4:]
    browser = page.evaluate("""async ([docs, published, key]) => {
        const out = [];
        for (const d of docs) out.push((await lemgrid.verifyReceipt(d, published, key)).ok);
        return out; }""", [cases, published, log_key])
    from lemgrid.ledger.identity import public_key_from_hex

    python = [check_proof(d, public_key_from_hex(log_key)).ok for d in cases]
    assert browser == python
    assert sum(python) == len(docs) and not all(python)


def test_screenshots_are_not_blank_and_text_is_readable(page, live, tmp_path):
    from PIL import Image

    for selector in ("body", "#feeder", "#depth-chart", "#price-chart"):
        png = page.locator(selector).screenshot()
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
        assert pixels.std() > 5, f"{selector} looks blank (pixel std {pixels.std():.1f})"
        (tmp_path / f"{selector.strip('#')}.png").write_bytes(png)
    # every control has a label, and body text has at least 7:1 contrast on its ground
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
        .map(e => e.id)""")
    assert unlabelled == []
    ratio = page.evaluate("""() => {
        const rgb = (s) => s.match(/\\d+/g).slice(0, 3).map(Number);
        const lum = (c) => { const [r, g, b] = c.map(v => { v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
            return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
        const st = getComputedStyle(document.body);
        const a = lum(rgb(st.color)), b = lum(rgb(st.backgroundColor));
        return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); }""")
    assert ratio >= 7


def test_the_operator_sees_every_session_and_its_budget(page, live):
    sign_in(page, live.operator_key)
    page.wait_for_selector("#budget-table tbody tr")
    rows = page.eval_on_selector_all(
        "#budget-table tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    settled = [r for r in rows if r[2] == "settled"]
    assert {r[0] for r in settled} >= {"s68", "s30"}
    assert all(r[3] == "0.00" for r in settled)  # every session's statements sum to zero
    identities = page.eval_on_selector_all("#identities-table tbody tr td:first-child",
                                           "cs => cs.map(c => c.textContent)")
    assert set(live.names.values()) <= set(identities)
    assert page.is_hidden("#me-view")
    assert page.errors == []
