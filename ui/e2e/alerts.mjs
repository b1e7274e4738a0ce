// Browser test of the Alerts page (cmd/lumen/ui_test.go,
// TestUIShowsAlertsAndTheirTraces). It reads:
//   LUMEN_URL          the server's HTTP address
//   LUMEN_ERROR_TRACE  the trace whose backend span failed: the first of the alert's traces
//   LUMEN_CHROMIUM     the browser
//   LUMEN_SCREENSHOTS  where alerts.png and alert.png are saved
// The server evaluates a rule whose alert BackendCalls fires for the
// backend service, over span metrics that carry exemplars. It prints
// `STEP …` as it goes and exits non-zero on the first failed expectation.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch, run, steps } from './lib.mjs';

const base = process.env.LUMEN_URL;
const errorTrace = process.env.LUMEN_ERROR_TRACE;
const browser = await launch();
const { expect, step } = steps();
const shots = process.env.LUMEN_SCREENSHOTS ?? 'test-results/ui';
mkdirSync(shots, { recursive: true });

await run(browser, async () => {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(15000);
  await page.setViewportSize({ width: 1400, height: 900 });
  const row = page.locator('[data-testid=alert-row]:has-text("BackendCalls")');

  await step('the Alerts page: the firing alert and its rule', async () => {
    await page.goto(`${base}/#/alerts`);
    await row.first().waitFor();
    expect((await row.first().locator('.badge').textContent()) === 'firing', 'the alert is not shown firing');
    expect(await row.first().locator('text=service').count() > 0, "the alert's labels are not shown");
    await page.locator('[data-testid=rule-row]:has-text("BackendCalls")').waitFor();
    expect(await page.locator('a[aria-current=page]:has-text("Alerts")').count() === 1, 'the Alerts tab is not the current one');
    await page.screenshot({ path: join(shots, 'alerts.png') });
  });

  await step("the alert's page: its chart, and its traces erroring first", async () => {
    await row.first().locator('[data-testid=alert-open]').click();
    await page.locator('[data-testid=alert-name]:has-text("BackendCalls")').waitFor();
    await page.locator('[data-testid=alert-chart]').waitFor();
    await page.locator('[data-testid=evidence-trace]').first().waitFor();
    const first = page.locator('[data-testid=evidence-trace]').first();
    expect(await first.locator('.badge:has-text("error")').count() === 1, 'the first trace is not the erroring one');
    const id = await first.locator('[data-testid=evidence-trace-link]').textContent();
    expect(id === errorTrace, `the first trace is ${id}, not ${errorTrace}`);
    expect((await first.textContent()).includes('reserve'), "the trace's span is not named");
    await page.screenshot({ path: join(shots, 'alert.png') });
  });

  await step('one click to the trace', async () => {
    await page.locator('[data-testid=evidence-trace-link]').first().click();
    await page.waitForFunction((id) => location.hash.startsWith(`#/trace/${id}`), errorTrace);
    await page.locator('[data-testid=waterfall] .row').first().waitFor();
    expect(await page.locator('[data-testid=waterfall] .row').count() === 4, 'the trace page does not show its 4 spans');
  });
});
