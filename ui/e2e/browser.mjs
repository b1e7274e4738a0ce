// Browser test of Lumen's UI: headless Chromium driven by playwright-core,
// against a real `lumen serve` that cmd/lumen/ui_test.go filled through
// OTLP, remote write and Loki push. It reads:
//   LUMEN_URL          the server's HTTP address (http://127.0.0.1:port)
//   LUMEN_FIXTURE      JSON: what the server holds (ids, names, time window)
//   LUMEN_CHROMIUM     the browser (Debian's /usr/bin/chromium)
//   LUMEN_SCREENSHOTS  where each page's screenshot is saved
// It prints `STEP …` as it goes, `METRIC name=value` for the figures, and
// exits non-zero on the first failed expectation.
import { launch, steps } from './lib.mjs';
import { readFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const base = process.env.LUMEN_URL;
const fx = JSON.parse(readFileSync(process.env.LUMEN_FIXTURE, 'utf8'));
const shots = process.env.LUMEN_SCREENSHOTS ?? 'test-results/ui';
mkdirSync(shots, { recursive: true });
rmSync(join(shots, 'failure.png'), { force: true });
const win = `from=${fx.from}&to=${fx.to}`;

const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, colorScheme: 'light' });
const page = await context.newPage();
page.setDefaultTimeout(15000);
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
// A 4xx the page shows as an error state is logged by the browser as a failed load; anything else is a defect.
page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(`console: ${m.text()}`); });

const { fail, expect, step } = steps();
async function shot(name) { await page.screenshot({ path: join(shots, `${name}.png`), fullPage: false }); }
const hash = () => page.evaluate(() => location.hash);

// complete types into a query box until the suggestion shows, and takes it.
async function complete(box, typed, suggestion) {
  await box.pressSequentially(typed);
  await page.locator(`.suggestions li.sel:has-text("${suggestion}")`).waitFor();
  await page.keyboard.press('Tab');
  await page.waitForFunction(([label, want]) => document.querySelector(`textarea[aria-label="${label}"]`).value.includes(want),
    [await box.getAttribute('aria-label'), suggestion]);
}

async function pushLine(stream, line) {
  const body = JSON.stringify({ streams: [{ stream, values: [[`${Date.now()}000000`, line]] }] });
  const r = await fetch(fx.lokiPushURL, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  if (r.status !== 204) fail(`push answered ${r.status}: ${await r.text()}`);
}

try {
  await step('the traces page searches by service and by status', async () => {
    await page.goto(`${base}/#/traces?${win}`);
    // Preact sets an option's value as a property, not an attribute: ask the DOM.
    await page.waitForFunction(() => [...document.querySelectorAll('select[name=service] option')].some((o) => o.value === 'frontend'));
    await page.selectOption('select[name=service]', 'frontend');
    await page.click('button[type=submit]');
    const rows = page.locator('[data-testid=trace-results] tbody tr');
    await rows.first().waitFor();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=trace-results] tbody tr').length === 6);
    expect((await hash()).includes('service=frontend'), `the search is not in the URL: ${await hash()}`);
    expect(await page.locator('svg.scatter circle').count() === 6, 'the scatter does not have a dot per trace');
    for (const id of [fx.traceId, fx.errorTraceId, fx.slowTraceId]) expect(await page.locator(`a[href*="${id}"]`).count() > 0, `trace ${id} is not listed`);
    await shot('traces');
    // Search criteria hold for one span: the failing span is the backend's.
    await page.selectOption('select[name=service]', 'backend');
    await page.selectOption('select[name=status]', 'error');
    await page.click('button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=trace-results] tbody tr').length === 1);
    expect(await page.locator(`[data-testid=trace-results] a[href*="${fx.errorTraceId}"]`).count() === 1, 'status=error does not find the failing trace');
    await page.goBack();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=trace-results] tbody tr').length === 6);
    expect(!(await hash()).includes('status=error'), 'the back button did not return to the previous search');
  });

  await step('a result opens the trace waterfall', async () => {
    await page.click(`[data-testid=trace-results] a.trace-link[href*="${fx.traceId}"]`);
    await page.locator('[data-testid=waterfall] .row').first().waitFor();
    expect(await page.locator('[data-testid=waterfall] .row').count() === 4, 'the waterfall does not show the 4 spans');
    expect((await page.textContent('[data-testid=trace-id]')) === fx.traceId, 'the header shows another trace id');
    expect(await page.locator('[data-testid=waterfall] .row .bar.crit').count() >= 2, 'no critical path is marked');
    expect(await page.locator(`[data-testid=waterfall] .row[data-span-id="${fx.frontendSpanId}"] .logmark`).count() === 2, 'the frontend span does not carry its 2 log markers');
    await page.click(`[data-testid=waterfall] .row[data-span-id="${fx.frontendSpanId}"]`);
    const details = page.locator('[data-testid=span-details]');
    await details.waitFor();
    const text = await details.textContent();
    for (const want of [fx.spanName, 'http.route', 'self time', 'service.name', 'SERVER']) expect(text.includes(want), `span details lack "${want}"`);
    await page.click(`[data-testid=waterfall] .row[data-span-id="${fx.frontendSpanId}"] .toggle`);
    expect(await page.locator('[data-testid=waterfall] .row').count() === 2, 'collapsing the frontend span does not hide its subtree');
    await page.click(`[data-testid=waterfall] .row[data-span-id="${fx.frontendSpanId}"] .toggle`);
    await shot('trace');
  });

  await step('the Logs tab lists the trace lines and highlights the selected span', async () => {
    await page.click('button[role=tab]:has-text("Logs")');
    const lines = page.locator('[data-testid=trace-logs] tr.logline');
    await lines.first().waitFor();
    const all = (await lines.allTextContents()).join('\n');
    for (const want of [fx.logLine, 'slow cache', 'reserving stock', 'stock reserved']) expect(all.includes(want), `the Logs tab lacks "${want}"`);
    expect(await page.locator('[data-testid=trace-logs] tr.logline.hl').count() === 2, 'the selected span\'s 2 lines are not highlighted');
    expect((await hash()).includes('tab=logs'), 'the tab is not in the URL');
    await shot('trace-logs');
  });

  await step('the Metrics tab charts the services and an exemplar opens its trace', async () => {
    await page.click('button[role=tab]:has-text("Metrics")');
    await page.locator('[data-testid=trace-metrics] .uplot canvas').first().waitFor();
    const dots = page.locator('[data-testid=trace-metrics] a.exemplar');
    await dots.first().waitFor();
    await shot('trace-metrics');
    const target = await dots.last().getAttribute('data-trace-id');
    expect(/^[0-9a-f]{32}$/.test(target), `an exemplar has no trace id: ${target}`);
    // The dot of that trace, found again by its id (a chart redraws its
    // dots when its data comes in) and clicked itself: dots of exemplars
    // close in time and value overlap, and a click at a point lands on
    // the one on top.
    await page.locator(`[data-testid=trace-metrics] a.exemplar[data-trace-id="${target}"]`).first().evaluate((a) => a.click());
    await page.waitForFunction((id) => location.hash.startsWith(`#/trace/${id}`), target);
    await page.waitForFunction((id) => document.querySelector('[data-testid=trace-id]')?.textContent === id, target);
    await page.locator('[data-testid=waterfall] .row').first().waitFor();
  });

  await step('the log explorer runs LogQL, completes labels and links a line to its trace', async () => {
    await page.goto(`${base}/#/logs?${win}`);
    const box = page.locator('textarea[aria-label="LogQL query"]');
    await box.click();
    await complete(box, '{servi', 'service_name');
    await complete(box, '="fr', 'frontend');
    await box.pressSequentially('}');
    expect((await box.inputValue()) === '{service_name="frontend"}', `completion wrote ${await box.inputValue()}`);
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=log-lines] tr.logline').first().waitFor();
    await page.locator('[data-testid=volume] canvas').waitFor();
    expect((await hash()).includes('q=%7Bservice_name'), 'the query is not in the URL');
    const line = page.locator(`[data-testid=log-lines] tr.logline:has-text("${fx.logLine}")`);
    await line.click();
    await line.locator('.line-details').waitFor();
    await shot('logs');
    await line.locator('a.trace-btn').click();
    await page.waitForFunction((id) => document.querySelector('[data-testid=trace-id]')?.textContent === id, fx.traceId);
    await page.locator('[data-testid=trace-logs] tr.logline.hl').first().waitFor();
  });

  await step('live tail shows a newly pushed line, and pauses', async () => {
    const q = encodeURIComponent('{service_name="livetest"}');
    await page.goto(`${base}/#/logs?q=${q}&live=1`);
    await page.waitForFunction(() => document.querySelector('[data-testid=live-status]')?.textContent === 'live');
    await pushLine({ service_name: 'livetest' }, 'first live line trace_id=' + fx.traceId);
    await page.locator('[data-testid=live-lines] tr:has-text("first live line")').waitFor();
    await page.waitForFunction(() => parseFloat(document.querySelector('[data-testid=live-rate]').textContent) > 0);
    await page.click('[data-testid=live-pause]');
    await pushLine({ service_name: 'livetest' }, 'line while paused');
    await page.locator('text=new lines held').waitFor();
    expect(await page.locator('[data-testid=live-lines] tr:has-text("line while paused")').count() === 0, 'a paused tail still shows new lines');
    await page.click('[data-testid=live-pause]');
    await page.locator('[data-testid=live-lines] tr:has-text("line while paused")').waitFor();
    await shot('live-tail');
  });

  await step('the metrics explorer completes names, charts PromQL and links exemplars', async () => {
    await page.goto(`${base}/#/metrics?${win}`);
    const box = page.locator('textarea[aria-label="PromQL query"]');
    await box.click();
    await complete(box, 'http_request_dur', 'http_request_duration_seconds_bucket');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=metrics-chart] canvas').waitFor();
    const dot = page.locator(`[data-testid=metrics-chart] a.exemplar[data-trace-id="${fx.exemplarTraceId}"]`);
    await dot.waitFor();
    expect(await page.locator('.u-legend .u-series').count() >= 2, 'the chart has no legend');
    await shot('metrics');
    await dot.click();
    await page.waitForFunction((id) => document.querySelector('[data-testid=trace-id]')?.textContent === id, fx.exemplarTraceId);
    await page.goBack();
    await page.locator('[data-testid=metrics-chart] canvas').waitFor();
  });

  await step('the services page shows RED figures and the graph, and filters traces', async () => {
    await page.goto(`${base}/#/services?${win}`);
    const table = page.locator('[data-testid=services]');
    await table.waitFor();
    const text = await table.textContent();
    for (const s of ['client', 'frontend', 'backend', 'db']) expect(text.includes(s), `service ${s} is missing`);
    await page.locator('[data-testid=service-graph] .node').first().waitFor();
    expect(await page.locator('[data-testid=service-graph] .edge').count() >= 3, 'the service graph lacks edges');
    await shot('services');
    await page.click('[data-testid=services] tr:has-text("backend") a:text("traces")');
    await page.locator('[data-testid=trace-results] tbody tr').first().waitFor();
    expect((await hash()).includes('service=backend'), 'the service link did not filter the traces');
  });

  await step(`a trace of ${fx.bigSpanCount} spans renders and scrolls`, async () => {
    await page.goto(`${base}/#/traces`);
    const t0 = Date.now();
    await page.evaluate((id) => { location.hash = `#/trace/${id}`; }, fx.bigTraceId);
    await page.waitForFunction((id) => window.__lumenTraceRender?.traceId === id, fx.bigTraceId, { timeout: 30000 });
    const wall = Date.now() - t0;
    const r = await page.evaluate(() => window.__lumenTraceRender);
    expect(r.spans === fx.bigSpanCount, `rendered ${r.spans} spans`);
    const drawn = await page.locator('[data-testid=waterfall] .row').count();
    expect(drawn > 10 && drawn < 200, `the waterfall draws ${drawn} rows at once: it must draw only the visible ones`);
    console.log(`METRIC render_first_ms=${r.ms.toFixed(0)}`);
    console.log(`METRIC render_wall_ms=${wall}`);
    await shot('big-trace');
    const frames = await page.evaluate(() => new Promise((resolve) => {
      const el = document.querySelector('[data-testid=waterfall]');
      const times = [];
      let last = performance.now();
      let n = 0;
      const tick = () => {
        const now = performance.now();
        times.push(now - last);
        last = now;
        el.scrollTop += 400;
        if (++n < 150 && el.scrollTop + el.clientHeight < el.scrollHeight) requestAnimationFrame(tick);
        else requestAnimationFrame(() => resolve(times.slice(1)));
      };
      requestAnimationFrame(tick);
    }));
    frames.sort((a, b) => a - b);
    const p95 = frames[Math.floor(frames.length * 0.95)];
    console.log(`METRIC render_scroll_frames=${frames.length}`);
    console.log(`METRIC render_scroll_p95_frame_ms=${p95.toFixed(1)}`);
    console.log(`METRIC render_scroll_max_frame_ms=${frames[frames.length - 1].toFixed(1)}`);
    await page.evaluate(() => { const el = document.querySelector('[data-testid=waterfall]'); el.scrollTop = el.scrollHeight; });
    await page.locator('[data-testid=waterfall] .row:has-text("op-4999")').waitFor();
  });

  await step('a narrow window, the dark theme and a bad trace id', async () => {
    await page.setViewportSize({ width: 420, height: 800 });
    await page.goto(`${base}/#/trace/${fx.traceId}`);
    await page.locator('[data-testid=waterfall] .row').first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow <= 1, `the page scrolls sideways by ${overflow}px in a narrow window`);
    await shot('trace-narrow');
    await page.setViewportSize({ width: 1400, height: 900 });
    await page.emulateMedia({ colorScheme: 'dark' });
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = bg.match(/\d+/g).map(Number);
    expect(r + g + b < 150, `the dark theme's background is ${bg}`);
    await shot('trace-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.goto(`${base}/#/trace/not-a-trace-id`);
    await page.locator('.error:has-text("invalid trace id")').waitFor();
    await shot('error');
  });

  expect(pageErrors.length === 0, `the page reported errors:\n${pageErrors.join('\n')}`);
  console.log('PASS');
} catch (e) {
  console.error(`FAIL ${e.message}`);
  if (pageErrors.length) console.error(`page errors:\n${pageErrors.join('\n')}`);
  await page.screenshot({ path: join(shots, 'failure.png') }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
