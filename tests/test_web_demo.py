"""The web demo in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): upload a photo,
type a post, submit, and see the entities highlighted by type, the image's attributes and server errors."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("skimage.data")

from mner.serving.pipeline import Pipeline
from mner.serving.service import Limits, create_app
from tests.serving import photo_jpeg, running_server

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"headless Chromium not found at {CHROMIUM}: apt-get install chromium")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed: pip install playwright"
    )
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
        except sync_api.Error as err:
            pytest.skip(f"headless Chromium at {CHROMIUM} did not start under Playwright: {err}")
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def url():
    with running_server(create_app(Pipeline(), Limits(max_chars={"text": 200}))) as base:
        yield base


@pytest.fixture
def page(browser, url):
    context = browser.new_context(viewport={"width": 1000, "height": 1100})
    page = context.new_page()
    page.goto(url + "/")
    yield page
    context.close()


def test_a_post_with_a_photo_shows_entities_by_type_and_attributes(page, tmp_path):
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(photo_jpeg("astronaut"))
    page.fill("#text", "Barack Obama visits Berlin")
    page.set_input_files("#image", str(photo))
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)

    marks = page.locator("#tagged mark.entity")
    assert marks.count() == 2
    found = marks.evaluate_all(
        "ms => ms.map(m => [m.firstChild.textContent, m.querySelector('.type').textContent])"
    )
    assert found == [["Barack Obama", "PER"], ["Berlin", "LOC"]]
    assert "type-PER" in marks.nth(0).get_attribute("class")
    assert "type-LOC" in marks.nth(1).get_attribute("class")
    colours = [marks.nth(i).evaluate("m => getComputedStyle(m).borderTopColor") for i in range(2)]
    assert colours[0] != colours[1]  # one colour per type
    assert page.locator("#legend li").all_inner_texts() == [
        "PER — person",
        "LOC — location",
        "ORG — organisation",
        "OTHER — other name",
    ]

    attributes = page.locator("#attributes li.attribute")
    assert attributes.count() == 5
    for text in attributes.all_inner_texts():
        assert text.strip().endswith("%"), text
    assert "No knowledge graph used" in page.inner_text("#knowledge")
    assert page.is_hidden("#error")
    assert page.inner_text("#model-info").startswith("Model: default")

    shot = tmp_path / "web_demo.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_a_server_error_is_shown_on_the_page(page, tmp_path):
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_bytes(b"these are not the pixels you are looking for")
    page.fill("#text", "Barack Obama visits Berlin")
    page.set_input_files("#image", str(not_a_photo))
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert page.inner_text("#error") == "Error 422: image: not an image (unrecognised format)"
    assert page.is_hidden("#result")


def test_a_post_over_the_text_limit_is_reported(page):
    page.fill("#text", "word " * 50)
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert page.inner_text("#error") == "Error 413: text is 250 characters, over the 200-character limit"


def test_knowledge_is_shown_as_the_entity_and_its_triples(page):
    # the shape of Knowledge.to_dict(), as /v1/tag returns it when the server has a KG
    knowledge = {
        "path": "image",
        "entity": "Q76",
        "label": "barack obama",
        "type": "PER",
        "hop": 0,
        "similarity": 0.93,
        "mention": "Obama",
        "compared": 3,
        "candidates": [],
        "triples": [["barack obama", "isA", "politician"], ["barack obama", "isA", "lawyer"]],
    }
    page.evaluate("k => renderKnowledge(k)", knowledge)
    box = page.locator("#knowledge")
    assert box.locator("strong").inner_text() == "barack obama"
    assert "found by image" in box.inner_text() and "similarity 0.93" in box.inner_text()
    rows = box.locator("table.triples tr").evaluate_all(
        "rs => rs.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert rows == knowledge["triples"]
    page.evaluate("k => renderKnowledge(k)", {"path": "none", "triples": []})
    assert box.inner_text() == "The knowledge graph had nothing for this post."


def test_markup_in_a_post_is_shown_as_text_not_run(page):
    page.fill("#text", '<img src=x onerror="document.title=1"> Obama in Paris')
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.locator("#tagged img").count() == 0
    assert "onerror" in page.inner_text("#tagged")  # the tokens, as words
    assert page.title() == "mner — tag a post"


def test_the_docs_page_renders_every_operation_in_the_browser(browser, url):
    """Swagger UI 4.15 (the bundled one) cannot read OpenAPI 3.1: /docs must be given a document it renders."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(url + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = [p.replace("\u200b", "") for p in page.locator(".opblock-summary-path").all_inner_texts()]
    assert sorted(paths) == ["/health", "/v1/tag"]
    assert page.get_by_text("Unable to render this definition").count() == 0
    page.locator(".opblock-summary-path", has_text="/v1/tag").click()  # its request body is shown too
    page.wait_for_selector(".opblock-body .body-param-content-type, .opblock-body .model-box", timeout=10_000)
    context.close()


def test_a_prose_context_shows_a_warning_scores_and_how_the_context_was_read(page):
    """Prose typed into the Context box does not help: the page says so, shows each entity's score, and hides the
    entities below the minimum score."""
    page.fill("#text", "Bears win in Chicago")
    page.fill("#context", "The Bears are a football team and they played very well today.")
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)

    warnings = page.locator("#warnings li.warning").all_inner_texts()
    assert page.locator("#warnings").is_visible()
    assert any("lists no entity that can be read" in w for w in warnings), warnings
    assert any("tagged from its text alone" in w for w in warnings), warnings

    scores = page.locator("#entity-list li.entity-item .score").all_inner_texts()
    assert len(scores) == 2 and all(s.strip().startswith("score 0.") for s in scores), scores
    assert "Route: none" in page.locator("#read-as .route").inner_text()

    page.locator("#min-score").fill("1")  # nothing the model finds is sure enough: all hidden, and said so
    assert page.locator("#tagged mark.entity").count() == 0
    assert "2 more scored below 1.00" in page.locator("#entity-list").inner_text()


def test_an_entity_list_context_shows_what_was_read_and_the_route(page):
    page.fill("#text", "Bears win in Chicago")
    page.fill("#context", "Named entities:1. Bears (sports team)2. Chicago (city)")
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.locator("#warnings").is_hidden()
    assert page.locator("#read-as li.read-entity").all_inner_texts() == [
        "Bears — sports team → ORG",
        "Chicago — city → LOC",
    ]
    assert "Route: typed" in page.locator("#read-as .route").inner_text()
