// Browser test of the trace page over remote backends
// (cmd/lumen/replicas_test.go, TestReplicasShareRemoteBackends;
// remote_tempo_test.go, TestTracesInTempo): the same traces opened on a
// Lumen with its own store and on one whose spans (and, for the replicas,
// lines and metrics) are in remote backends — Jaeger, Loki and Prometheus,
// or Tempo — must show the same page. It reads:
//   LUMEN_LOCAL_URL    the local Lumen's HTTP address
//   LUMEN_REMOTE_URL   the replica's
//   LUMEN_TRACE_IDS    trace ids, comma-separated
//   LUMEN_CHROMIUM     the browser
// It prints `STEP …` as it goes and exits non-zero on the first failed
// expectation, with both pages' contents.
import { launch, run, steps } from './lib.mjs';

const local = process.env.LUMEN_LOCAL_URL;
const remote = process.env.LUMEN_REMOTE_URL;
const ids = process.env.LUMEN_TRACE_IDS.split(',');
const browser = await launch();
const { expect, step } = steps();

// shown is what the trace page shows of trace id: the waterfall's rows, the
// Logs tab's lines, and the Metrics tab's headings, panels (chart or
// empty), graph edges and exemplars.
async function shown(page, base, id) {
  await page.goto(`${base}/#/trace/${id}`);
  await page.waitForFunction((want) => document.querySelector('[data-testid=trace-id]')?.textContent === want, id);
  await page.locator('[data-testid=waterfall] .row').first().waitFor();
  const rows = await page.locator('[data-testid=waterfall] .row').evaluateAll((els) => els.map((e) => `${e.dataset.spanId} ${e.textContent.trim()}`));
  await page.click('button[role=tab]:has-text("Logs")');
  await page.locator('[data-testid=trace-logs] tr.logline, .empty').first().waitFor();
  const lines = await page.locator('[data-testid=trace-logs] tr.logline').evaluateAll((els) => els.map((e) =>
    `${e.dataset.spanId} ${e.querySelector('td.line')?.firstChild?.textContent ?? ''}`));
  await page.click('button[role=tab]:has-text("Metrics")');
  await page.locator('[data-testid=trace-metrics]').waitFor();
  await page.waitForFunction(() => {
    const tab = document.querySelector('[data-testid=trace-metrics]');
    return tab && tab.querySelectorAll('.service-red .panel').length > 0 && tab.querySelectorAll('.loading').length === 0;
  });
  const metrics = await page.locator('[data-testid=trace-metrics]').evaluate((tab) => ({
    headings: [...tab.querySelectorAll('h3')].map((h) => h.textContent.trim()),
    panels: [...tab.querySelectorAll('.service-red .panel')].map((p) =>
      `${p.querySelector('.panel-title')?.textContent} ${p.querySelector('canvas') ? 'chart' : 'empty'}`),
    graph: [...tab.querySelectorAll('table.results tbody tr')].map((r) => r.textContent),
    exemplars: [...tab.querySelectorAll('ul li')].map((l) => l.textContent),
  }));
  return { rows, lines, metrics };
}

await run(browser, async () => {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  for (const id of ids) {
    await step(`trace ${id}: the same page from the local store and from the remote backends`, async () => {
      const want = await shown(page, local, id);
      const got = await shown(page, remote, id);
      expect(want.rows.length > 0 && want.lines.length > 0 && want.metrics.panels.length > 0, `the local page is empty: ${JSON.stringify(want)}`);
      expect(JSON.stringify(want) === JSON.stringify(got), `the pages differ:\nlocal:  ${JSON.stringify(want)}\nremote: ${JSON.stringify(got)}`);
    });
  }
});
