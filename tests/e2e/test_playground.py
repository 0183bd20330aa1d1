"""The docs and the playground in a real headless chromium, against the real model server and gateway.

One model server (quick-trained models, CORS on) and one gateway (an API key, a gateway ensemble, a
route, CORS allowed for the model server's origin) serve every test of this module. Every page is
watched: a request to anything but loopback fails the test. What the page shows is compared with
what ``/v1/classify`` answers for the same image.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.e2e.conftest import Offline
from tests.integration.gateway.conftest import Gateway
from tests.integration.gateway.test_modelserver import ModelServer

pytestmark = pytest.mark.slow

KEY = "playground-key"
SERVABLES = ("cnn", "lstm", "transformer", "ensemble")


@pytest.fixture(scope="module")
def stack(tmp_module: Path, quick_repo: Path) -> Iterator[tuple[ModelServer, Gateway]]:
    model_server = ModelServer(tmp_module, quick_repo, ("--rest_api_enable_cors_support=true",))
    config = {
        "repo": str(quick_repo),
        "upstreams": {"default": {"targets": [f"127.0.0.1:{model_server.grpc_port}"]}},
        "servables": {name: "default" for name in SERVABLES},
        "ensembles": {"vote": {"members": ["cnn", "lstm", "transformer"], "voting": "soft"}},
        "routes": {"canary": {"split": {"cnn": 50, "lstm": 50}}},
        "api_keys": [KEY],
        "cors": {"allow_origins": [f"http://127.0.0.1:{model_server.rest_port}"]},
        "timeouts": {"status_poll_s": 0.3, "request_s": 30.0},
    }
    gateway = Gateway(tmp_module, config)
    try:
        gateway.wait_ready(60)
        yield model_server, gateway
    finally:
        gateway.stop()
        model_server.stop()


@pytest.fixture
def gateway(stack: tuple[ModelServer, Gateway]) -> Gateway:
    return stack[1]


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, Offline]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)  # Playwright's 30 s is tight on a loaded 2-core machine
    watch = Offline(context)
    page = context.new_page()
    try:
        yield page, watch
        watch.check()
    finally:
        context.close()


@pytest.fixture(scope="module")
def test_image(tmp_module: Path) -> Path:
    """A real Fashion-MNIST test image (the Debian package's t10k file), saved as a PNG."""
    from training.data import load_split, locate

    try:
        images, _ = load_split(locate("fashion_mnist"), "test", check_count=False)
    except Exception as error:  # the dataset package is missing
        pytest.skip(f"Fashion-MNIST is not installed ({error}); apt-get install dataset-fashion-mnist")
    path = tmp_module / "fashion-test-0.png"
    Image.fromarray(np.asarray(images[0]).reshape(28, 28).astype(np.uint8), mode="L").save(path)
    return path


def _classify(gateway: Gateway, name: str, data: bytes, filename: str = "image.png") -> httpx.Response:
    return gateway.client.post(
        f"/v1/classify/{name}", files={"file": (filename, data, "image/png")}, headers={"x-api-key": KEY}
    )


def _connect(page: Any, gateway: Gateway, key: str = KEY) -> None:
    page.goto(f"{gateway.url}/playground/")
    page.fill("#api-key", key)
    page.click("#connect")
    page.wait_for_selector("input[name=servable][value=vote]")


def _pick(page: Any, *names: str) -> None:
    for box in page.query_selector_all("input[name=servable]"):
        box.set_checked(box.get_attribute("value") in names)


def _answers(page: Any, names: tuple[str, ...]) -> dict[str, Any]:
    page.click("#classify")
    page.wait_for_function(
        "n => [...document.querySelectorAll('#results .result')].filter(c => c.dataset.status).length === n",
        arg=len(names),
        timeout=90_000,  # a loaded 2-core machine (the whole suite beside it) is slow, not wrong
    )
    return {name: page.locator(f'#results .result[data-servable="{name}"]') for name in names}


def test_docs_render_from_the_gateway_alone(page: tuple[Any, Offline], gateway: Gateway, screenshots: Path) -> None:
    tab, watch = page
    schema = gateway.client.get("/openapi.json").json()
    operations = sum(len(methods) for methods in schema["paths"].values())
    tab.goto(f"{gateway.url}/docs")
    tab.wait_for_selector(".opblock-summary")
    assert tab.locator(".opblock").count() == operations
    assert tab.locator("text=Classify images (PNG/JPEG, base64 or pixel arrays)").count() == 1
    tab.screenshot(path=str(screenshots / "docs-swagger.png"))
    tab.goto(f"{gateway.url}/redoc")
    tab.locator("h2", has_text="Servables, routes and ensembles with their state").wait_for()
    assert tab.locator("[data-section-id^='tag/']").count() >= 3  # operations, classify, tensorflow-serving
    watch.check()
    local = [url for url in watch.requests if "/assets/docs/" in url]
    assert any(url.endswith("swagger-ui-bundle.js") for url in local)
    assert any(url.endswith("redoc.standalone.js") for url in local)
    assert watch.failed == []
    # ReDoc's side menu asks for its vendor's logo on a CDN; the page's policy stops it in the browser
    assert all("/redoc/logo" in url for url in watch.blocked_by_policy)


def test_api_key_flow(page: tuple[Any, Offline], gateway: Gateway) -> None:
    tab, _ = page
    refused = gateway.client.get("/v1/models")
    assert refused.status_code == 401
    tab.goto(f"{gateway.url}/playground/")
    error = tab.locator("#models-error")
    error.wait_for()
    assert error.inner_text() == f"HTTP 401: {refused.json()['error']}"
    assert tab.locator("#classify").is_disabled()
    tab.fill("#api-key", "not-the-key")
    tab.click("#connect")
    tab.wait_for_function("() => document.querySelector('#models-error').dataset.status === '401'")
    _connect(tab, gateway)
    assert not error.is_visible()
    listed = {box.get_attribute("value") for box in tab.query_selector_all("input[name=servable]")}
    assert listed == {*SERVABLES, "vote", "canary"}
    assert tab.locator("input[value=vote]").get_attribute("data-kind") == "ensemble"
    assert tab.locator("input[value=canary]").get_attribute("data-kind") == "route"
    tab.reload()  # the key stays for the tab's session
    tab.wait_for_selector("input[name=servable][value=vote]")


def test_drawing_gets_the_same_class_as_the_api(page: tuple[Any, Offline], gateway: Gateway) -> None:
    tab, _ = page
    _connect(tab, gateway)
    _pick(tab, "vote", "cnn")
    box = tab.locator("#canvas").bounding_box()
    strokes = [((0.35, 0.15), (0.3, 0.85)), ((0.65, 0.15), (0.7, 0.85)), ((0.35, 0.15), (0.65, 0.15))]
    for (x0, y0), (x1, y1) in strokes:  # a pair of trousers, roughly
        tab.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        tab.mouse.down()
        tab.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=12)
        tab.mouse.up()
    drawn = tab.evaluate("document.querySelector('#canvas').toDataURL('image/png')")
    png = _data_url_bytes(drawn)
    assert np.asarray(Image.open(io.BytesIO(png)).convert("L")).max() == 255  # something was drawn
    cards = _answers(tab, ("vote", "cnn"))
    for name, card in cards.items():
        expected = _classify(gateway, name, png).json()["predictions"][0]
        assert card.get_attribute("data-status") == "200"
        assert int(card.get_attribute("data-class-id")) == expected["class_id"], name
        assert card.get_attribute("data-label") == expected["label"]
        assert card.locator(".bar-row").count() == 5
    members = cards["vote"].locator(".member")
    assert members.count() == 3
    assert "v1 voted" in members.first.inner_text()
    assert cards["cnn"].locator(".version").inner_text() == "1"
    assert float(cards["cnn"].locator(".latency").inner_text()) > 0


def test_uploaded_test_image_gets_the_same_class_as_the_api(
    page: tuple[Any, Offline], gateway: Gateway, test_image: Path, screenshots: Path
) -> None:
    tab, _ = page
    _connect(tab, gateway)
    names = ("vote", "cnn", "ensemble", "canary")
    _pick(tab, *names)
    tab.set_input_files("#file", str(test_image))
    assert tab.locator("#source").inner_text() == test_image.name
    cards = _answers(tab, names)
    data = test_image.read_bytes()
    for name in ("vote", "cnn", "ensemble"):
        expected = _classify(gateway, name, data).json()
        assert int(cards[name].get_attribute("data-class-id")) == expected["predictions"][0]["class_id"], name
    assert cards["canary"].get_attribute("data-status") == "200"
    member_text = cards["vote"].locator(".members").inner_text()
    for member in _classify(gateway, "vote", data).json()["members"]:
        assert f"{member['servable']} v{member['version']} voted {member['labels'][0]}" in member_text
    tab.screenshot(path=str(screenshots / "playground.png"), full_page=True)


def test_invalid_file_shows_the_api_error(page: tuple[Any, Offline], gateway: Gateway, tmp_path: Path) -> None:
    tab, _ = page
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"these are notes, not a picture\n")
    expected = _classify(gateway, "cnn", bad.read_bytes(), bad.name)
    assert expected.status_code == 400
    _connect(tab, gateway)
    _pick(tab, "cnn")
    tab.set_input_files("#file", str(bad))
    card = _answers(tab, ("cnn",))["cnn"]
    assert card.get_attribute("data-status") == "400"
    assert card.locator(".error").inner_text() == f"HTTP 400: {expected.json()['error']}"


def test_pages_on_another_origin_reach_both_servers_with_cors(
    page: tuple[Any, Offline], stack: tuple[ModelServer, Gateway]
) -> None:
    model_server, gateway = stack
    tab, _ = page
    tab.goto(f"{model_server.rest}/v1/models/cnn")  # a page whose origin is the model server's
    status = tab.evaluate(
        "async ([url, key]) => (await fetch(url, {headers: {'x-api-key': key}})).status",
        [f"{gateway.url}/v1/models", KEY],
    )
    assert status == 200  # preflighted (custom header) and allowed by cors.allow_origins
    tab.goto(f"{gateway.url}/playground/")  # and from the gateway's origin to the model server
    answer = tab.evaluate(
        """async (url) => {
            const body = JSON.stringify({instances: [Array(28).fill(Array(28).fill([0]))]});
            const response = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'}, body});
            return [response.status, (await response.json()).predictions.length];
        }""",
        f"{model_server.rest}/v1/models/cnn:predict",
    )
    assert answer == [200, 1]


def _data_url_bytes(url: str) -> bytes:
    import base64

    return base64.b64decode(url.split(",", 1)[1])
