"""Opens the wasmrelay dashboard in headless Chromium over the DevTools protocol.

    python3 cdp.py CHROMIUM URL TOKEN SCREENSHOT.png EXPECT_DELIVERED

Starts Chromium with a fresh profile, loads URL, enters TOKEN in the page's login form,
waits (60 s at most) until the page has drawn totals with at least EXPECT_DELIVERED
delivered recipients, saves a screenshot, and prints what the page drew as JSON:
the data-* attributes of the dashboard and of each chart, and the SVG shapes per chart.
Needs `websocket-client` (pip).
"""

import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import websocket

chromium, url, token, screenshot, expect_delivered = sys.argv[1:6]
expect_delivered = int(expect_delivered)
profile = tempfile.mkdtemp(prefix="wasmrelay-chromium-")
browser = subprocess.Popen(
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
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
)


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


try:
    # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
    deadline = time.time() + 60
    port = None
    while port is None:
        line = browser.stderr.readline()
        if not line:
            fail("chromium exited before its DevTools endpoint was up")
        m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        if m:
            port = int(m.group(1))
        elif time.time() > deadline:
            fail("no DevTools endpoint within 60 s")
    # Keep reading its log, so that a full pipe never stalls the browser.
    threading.Thread(target=lambda: browser.stderr.read(), daemon=True).start()
    pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
    page = next(p for p in pages if p["type"] == "page")
    ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
    next_id = [0]

    def call(method, **params):
        next_id[0] += 1
        ws.send(json.dumps({"id": next_id[0], "method": method, "params": params}))
        while True:
            msg = json.loads(ws.recv())
            if msg.get("id") == next_id[0]:
                if "error" in msg:
                    fail(f"{method}: {msg['error']}")
                return msg["result"]

    def evaluate(expression):
        r = call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            fail(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(what, expression, timeout=60):
        deadline = time.time() + timeout
        while True:
            value = evaluate(expression)
            if value:
                return value
            if time.time() > deadline:
                fail(f"timed out waiting for {what}; page: "
                     + str(evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")))
            time.sleep(0.2)

    call("Emulation.setDeviceMetricsOverride", width=1360, height=1500, deviceScaleFactor=1, mobile=False)
    call("Page.enable")
    call("Page.navigate", url=url)
    wait("the login form", "document.getElementById('login') && !document.getElementById('login').hidden")
    evaluate(f"""
        document.getElementById('token').value = {json.dumps(token)};
        document.getElementById('login').requestSubmit();
        true
    """)
    wait("the charts", f"""
        (() => {{
            const d = document.getElementById('dashboard');
            return !d.hidden && Number(d.dataset.rendered) >= 1
                && Number(d.dataset.delivered) >= {expect_delivered};
        }})()
    """)
    drawn = evaluate("""
        (() => {
            const data = (id) => Object.assign({}, document.getElementById(id).dataset);
            const shapes = (id) => {
                const svg = document.querySelector('#' + id + ' svg');
                return svg ? {
                    paths: svg.querySelectorAll('path').length,
                    rects: svg.querySelectorAll('rect[data-value]').length,
                    circles: svg.querySelectorAll('circle').length,
                    width: svg.getBoundingClientRect().width,
                    height: svg.getBoundingClientRect().height,
                } : null;
            };
            const ids = ['volume', 'outcomes', 'queue', 'domains', 'plugins'];
            const out = { dashboard: data('dashboard'), charts: {}, shapes: {}, tiles: {} };
            for (const id of ids) { out.charts[id] = data(id); out.shapes[id] = shapes(id); }
            for (const t of document.querySelectorAll('.tile .value')) out.tiles[t.id] = t.textContent;
            out.donut = [...document.querySelectorAll('#outcomes path[data-name]')]
                .map((p) => [p.dataset.name, Number(p.dataset.value)]);
            out.domainBars = [...document.querySelectorAll('#domains rect[data-value]')]
                .map((r) => [r.dataset.key, Number(r.dataset.value)]);
            out.pluginBars = [...document.querySelectorAll('#plugins rect[data-value]')]
                .map((r) => [r.dataset.key, Number(r.dataset.value)]);
            return out;
        })()
    """)
    shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    with open(screenshot, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    print(json.dumps(drawn))
    ws.close()
finally:
    browser.kill()
    browser.wait()
    shutil.rmtree(profile, ignore_errors=True)
