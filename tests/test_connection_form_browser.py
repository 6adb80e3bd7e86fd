"""The ``cloudflare`` connection as most users make it: Admin > Connections > Add, in a real browser.

The real Airflow api-server (simple auth manager, every user an admin, connection testing enabled) serves
its own UI; Debian's headless Chromium, driven by Playwright, fills the form as a new user would. What the
form saves is then used the way the README tells users to: ``airflow connections test`` (Airflow's own Test
button sends ``port: 0`` and is refused for every connection type) and an ``airflow dags test`` of the demo
DAG, both against the API simulator and both reading the connection from the metadata DB, not from an
``AIRFLOW_CONN_*`` variable.

The browser is Debian's ``chromium`` (``scripts/test.sh`` installs it when missing); no browser is ever
downloaded. Without it these tests fail with that instruction: a skip would read as a pass in CI.

``CFBILLING_UPDATE_DOCS_SCREENSHOT=1`` also writes the filled form to ``docs/img/connection-form.png``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import EXAMPLE_DAGS, REPO_ROOT
from engine import AIRFLOW, Engine, wait_until
from playwright.sync_api import expect

from airflow_provider_cfbilling import CONNECTION_FIELDS, get_provider_info
from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN, STANDARD_ACCOUNT

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

CHROMIUM = Path("/usr/bin/chromium")
DEMO_DAG = "example_cloudflare_usage_demo"
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "img" / "connection-form.png"
# Generous for a loaded 2-core machine: every wait below is on a selector or a response, never a sleep.
UI_TIMEOUT_MS = 90_000
FORM = get_provider_info()["connection-types"][0]
BEHAVIOUR = FORM["ui-field-behaviour"]
STANDARD_FIELDS = ("host", "schema", "login", "password", "port")


# -- the api-server, the browser, and the form ----------------------------------------------------------


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Airflow's api-server alone (no scheduler: ``dags test`` runs the DAG itself), its own home and DB."""
    home = tmp_path_factory.mktemp("connection-form") / "airflow-home"
    (home / "dags").mkdir(parents=True)
    shutil.copy(EXAMPLE_DAGS / f"{DEMO_DAG}.py", home / "dags")
    engine = Engine(home, {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"})
    engine.airflow("db", "migrate")
    try:
        engine.start(components=("api-server",))
        wait_until(engine, "the api-server to answer", lambda: _answers(f"{_base_url(engine)}/api/v2/monitor/health"))
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: run the README's test command (bash scripts/test.sh installs Debian's chromium), "
        "or `apt-get install -y chromium chromium-driver`. Never `playwright install`: no browser is downloaded."
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, api_server: Engine) -> Iterator[Any]:
    context = browser.new_context(base_url=_base_url(api_server), viewport={"width": 1280, "height": 1400})
    context.set_default_timeout(UI_TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    context.close()


def _base_url(engine: Engine) -> str:
    return f"http://127.0.0.1:{engine.port}"


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def open_cloudflare_form(page: Any, conn_id: str) -> None:
    """Admin > Connections > Add Connection, the id typed and the Cloudflare type picked, as a user does."""
    page.goto("/")
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="Connections").click()
    page.get_by_role("button", name="Add Connection").click()
    page.get_by_label("Connection ID").fill(conn_id)
    page.get_by_role("combobox", name="Connection Type").fill(FORM["hook-name"])
    page.get_by_role("option", name=FORM["hook-name"], exact=True).click()
    # The standard fields' panel opens once the type's form is loaded.
    page.locator("input[name=password]").wait_for(state="visible")


def open_extra_fields(page: Any) -> None:
    """Open the 'Extra Fields' panel (the form shows one panel at a time: the standard fields close)."""
    page.get_by_role("button", name="Extra Fields", exact=True).click()
    page.locator("input[name=element_account_id]").wait_for(state="visible")


def extra_field_row(page: Any, key: str) -> Any:
    """The row of one declared extra: its label, its input and its help text."""
    return page.locator("[data-scope=field][data-part=root]").filter(has=page.locator(f"[name=element_{key}]"))


def save(page: Any, conn_id: str) -> dict[str, Any]:
    """Press Save; return what the UI sent to the API, once the API has stored it (201)."""
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/api/v2/connections")) as answer:
        page.get_by_role("button", name="Save").click()
    assert answer.value.status == 201, answer.value.text()
    page.get_by_role("dialog").wait_for(state="hidden")
    page.get_by_text(conn_id, exact=True).wait_for(state="visible")  # now listed on the Connections page
    return dict(json.loads(answer.value.request.post_data))


def add_connection(page: Any, conn_id: str, url: str, token: str, account_id: str, **extras: str) -> dict[str, Any]:
    """Fill the base URL, the token and the account id (and ``extras``, by key), leave the rest empty, save."""
    open_cloudflare_form(page, conn_id)
    page.locator("input[name=host]").fill(url)
    page.locator("input[name=password]").fill(token)
    open_extra_fields(page)
    page.locator("input[name=element_account_id]").fill(account_id)
    for key, value in extras.items():
        page.locator(f"input[name=element_{key}]").fill(value)
    return save(page, conn_id)


def airflow_cli(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    """An ``airflow`` command on the api-server's home and DB, with no ``AIRFLOW_CONN_*`` in its environment.

    Its stdout comes back with runs of whitespace made one space: the CLI wraps messages at the terminal width.
    """
    assert not any(name.startswith("AIRFLOW_CONN_") for name in engine.env)
    done = subprocess.run(
        [*AIRFLOW, *args],
        env={**engine.env, "COLUMNS": "400"},
        cwd=engine.home,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    done.stdout = " ".join(done.stdout.split())
    return done


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def side_by_side(browser: Any, left: bytes, right: bytes) -> bytes:
    """One picture of the form's two panels, which the form never shows at once, laid out by the browser."""
    (left_width, left_height), (right_width, right_height) = png_size(left), png_size(right)
    gap = 8
    tab = browser.new_page(
        viewport={"width": left_width + right_width + 3 * gap, "height": max(left_height, right_height) + 2 * gap}
    )
    images = "".join(
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" style="margin-left:{gap}px">'
        for png in (left, right)
    )
    tab.set_content(
        f'<body style="margin:0;background:#e2e8f0"><div id="both" style="display:flex;align-items:flex-start;'
        f'width:max-content;padding:{gap}px {gap}px {gap}px 0">{images}</div></body>'
    )
    tab.wait_for_function("[...document.images].every(img => img.complete && img.naturalWidth > 0)")
    picture = bytes(tab.locator("#both").screenshot())
    tab.close()
    return picture


# -- the tests -------------------------------------------------------------------------------------------


def test_the_form_shows_the_declared_labels_placeholders_hidden_fields_and_checks(page):
    open_cloudflare_form(page, "cloudflare_form_check")

    hidden = set(BEHAVIOUR["hidden-fields"])
    assert hidden and hidden < set(STANDARD_FIELDS)
    for name in STANDARD_FIELDS:
        field = page.locator(f"[name={name}]")
        if name in hidden:
            assert field.count() == 0, f"{name} is declared hidden but the form shows it"
            continue
        assert field.is_visible(), f"{name} is not hidden but the form does not show it"
        assert field.get_attribute("placeholder") == BEHAVIOUR["placeholders"][name]
        label = field.evaluate("input => input.labels[0].innerText")
        assert label.strip() == BEHAVIOUR["relabeling"][name]
    assert page.locator("input[name=password]").get_attribute("type") == "password"  # the token is not shown

    open_extra_fields(page)
    for key, spec in CONNECTION_FIELDS.items():
        row = extra_field_row(page, key)
        assert row.count() == 1, f"the form shows no field for the extra {key!r}"
        assert spec["label"] in row.inner_text(), key
        assert " ".join(spec["description"].split()) in " ".join(row.inner_text().split()), key

    # Numbers: the form enforces the declared minimum (a negative value becomes the minimum as it is left).
    for key in ("timeout", "max_retry_wait"):
        minimum = CONNECTION_FIELDS[key]["schema"]["minimum"]
        field = page.locator(f"input[name=element_{key}]")
        assert field.get_attribute("aria-valuemin") == str(minimum)
        field.fill("-1")
        field.blur()
        # The form clamps the value as it re-renders after the blur: wait for it (a loaded machine is slower).
        expect(field, key).to_have_value(str(minimum), timeout=UI_TIMEOUT_MS)

    # The account id: the declared length is enforced while typing, and a short value is flagged invalid by
    # the browser. Airflow's form still saves it (it ignores the declared pattern and the short length):
    # the next test shows the first use naming it.
    account = page.locator("input[name=element_account_id]")
    schema = CONNECTION_FIELDS["account_id"]["schema"]
    assert account.get_attribute("maxlength") == str(schema["maxLength"])
    assert account.get_attribute("minlength") == str(schema["minLength"])
    account.press_sequentially(STANDARD_ACCOUNT + "ffff")
    assert account.input_value() == STANDARD_ACCOUNT
    account.fill("")
    account.press_sequentially("NOT-A-HEX-ID")
    assert account.evaluate("input => input.validity.tooShort"), "the browser did not flag a 12-character id"
    assert "32" in account.evaluate("input => input.validationMessage")


def test_what_the_form_lets_through_is_named_at_first_use_before_any_request(page, api_server, sim):
    add_connection(page, "cloudflare_bad_account", sim.url, SIM_TOKEN, "NOT-A-HEX-ID")
    add_connection(page, "cloudflare_zero_timeout", sim.url, SIM_TOKEN, STANDARD_ACCOUNT, timeout="0")

    bad_account = airflow_cli(api_server, "connections", "test", "cloudflare_bad_account")
    zero_timeout = airflow_cli(api_server, "connections", "test", "cloudflare_zero_timeout")

    assert bad_account.returncode != 0, bad_account.stdout
    assert "Invalid Cloudflare account id 'NOT-A-HEX-ID'" in bad_account.stdout, bad_account.stdout
    assert f"the form's '{CONNECTION_FIELDS['account_id']['label']}' field" in bad_account.stdout
    assert "32 hexadecimal characters" in bad_account.stdout
    assert zero_timeout.returncode != 0, zero_timeout.stdout
    assert f"the form's '{CONNECTION_FIELDS['timeout']['label']}' field) is 0" in zero_timeout.stdout
    assert "it must be a positive number of seconds" in zero_timeout.stdout
    assert sim.requests == [], "a request was sent with a setting the hook refuses"


def test_a_connection_saved_from_the_form_tests_ok_and_the_demo_dag_lands_usage(
    page, browser, api_server, sim, tmp_path
):
    # Only what a new user must type: the base URL (here the simulator's), the token and the account id.
    open_cloudflare_form(page, "cloudflare_default")
    page.locator("input[name=host]").fill(sim.url)
    page.locator("input[name=password]").fill(SIM_TOKEN)
    standard_panel = page.get_by_role("dialog").screenshot()
    open_extra_fields(page)
    page.locator("input[name=element_account_id]").fill(STANDARD_ACCOUNT)
    extra_panel = page.get_by_role("dialog").screenshot()
    sent = save(page, "cloudflare_default")

    picture = side_by_side(browser, standard_panel, extra_panel)
    (tmp_path / "connection-form.png").write_bytes(picture)
    width, height = png_size(picture)
    assert width > 1000 and height > 500 and len(picture) > 50_000, (width, height, len(picture))
    if os.environ.get("CFBILLING_UPDATE_DOCS_SCREENSHOT"):
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        DOCS_SCREENSHOT.write_bytes(picture)

    # What the form saved: every declared extra, the ones left empty as null (the hook reads null as default).
    assert sent["conn_type"] == FORM["connection-type"]
    assert json.loads(sent["extra"]) == {key: None for key in CONNECTION_FIELDS} | {"account_id": STANDARD_ACCOUNT}
    assert api_server.query("SELECT conn_type, host FROM connection WHERE conn_id = 'cloudflare_default'") == [
        ("cloudflare", sim.url)
    ]

    tested = airflow_cli(api_server, "connections", "test", "cloudflare_default")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Connection success!" in tested.stdout  # Airflow's CLI prints no more of a success
    assert [(r["path"], r["auth"], r["status"]) for r in sim.requests] == [
        (f"/client/v4/accounts/{STANDARD_ACCOUNT}/billable-usage/info", "bearer", 200)
    ]

    run = airflow_cli(api_server, "dags", "test", DEMO_DAG, "2025-11-20")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert SIM_TOKEN not in output
    usage_calls = [r for r in sim.requests if r["path"].endswith("/billable-usage")]
    assert usage_calls and all(
        (r["account_id"], r["auth"], r["status"]) == (STANDARD_ACCOUNT, "bearer", 200) for r in usage_calls
    ), usage_calls

    # Landed: the operator's XCom holds every record the API served for the period, costs exact.
    served = requests.get(
        f"{sim.url}/accounts/{STANDARD_ACCOUNT}/billable-usage",
        headers={"Authorization": f"Bearer {SIM_TOKEN}"},
        timeout=30,
    )
    expected = json.loads(served.text, parse_float=Decimal)["result"]
    assert expected, "the simulator served no usage: the test would prove nothing"
    by_service: dict[str, tuple[int, Decimal]] = {}
    for record in expected:
        rows, cost = by_service.get(record["ServiceName"], (0, Decimal(0)))
        by_service[record["ServiceName"]] = (rows + 1, cost + record["ContractedCost"])
    xcoms = dict(
        api_server.query("SELECT task_id, value FROM xcom WHERE dag_id = ? AND key = 'return_value'", DEMO_DAG)
    )
    assert len(json.loads(xcoms["fetch_usage"])) == len(expected)
    summary = json.loads(xcoms["summarise"])
    assert {name: (entry["rows"], Decimal(entry["cost"])) for name, entry in summary.items()} == by_service


def test_a_wrong_token_saved_from_the_form_gets_the_actionable_reason(page, api_server, sim):
    wrong_token = "cfsim-a-token-cloudflare-does-not-know"
    add_connection(page, "cloudflare_wrong_token", sim.url, wrong_token, STANDARD_ACCOUNT)

    tested = airflow_cli(api_server, "connections", "test", "cloudflare_wrong_token")

    assert tested.returncode != 0, tested.stdout
    assert "Connection failed!" in tested.stdout
    assert "10000" in tested.stdout, tested.stdout
    assert "The credentials were rejected" in tested.stdout
    assert "Put a valid API token in the connection's password" in tested.stdout
    assert wrong_token not in tested.stdout + tested.stderr
    assert [r["status"] for r in sim.requests] == [403]
