// Browser test of the UI against a `lumen serve` that asks for tokens
// (cmd/lumen/ui_test.go, TestUIAsksForAToken). It reads:
//   LUMEN_URL          the server's HTTP address
//   LUMEN_READ_TOKEN   a token with the read scope
//   LUMEN_WRITE_TOKEN  a token with the write scope (to push lines)
//   LUMEN_LINE         a line the server holds, of {app="tokentest"}
//   LUMEN_CHROMIUM     the browser
// It prints `STEP …` as it goes and exits non-zero on the first failed
// expectation.
import { launch, run, steps } from './lib.mjs';

const base = process.env.LUMEN_URL;
const readToken = process.env.LUMEN_READ_TOKEN;
const writeToken = process.env.LUMEN_WRITE_TOKEN;
const line = process.env.LUMEN_LINE;
const browser = await launch();
const { expect, step } = steps();
const q = encodeURIComponent('{app="tokentest"}');
const logsURL = `${base}/#/logs?q=${q}&from=now-1h&to=now`;

await run(browser, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));

  await step('a server that asks for a token: the UI asks for one', async () => {
    await page.goto(logsURL);
    await page.locator('[data-testid=token-prompt]').waitFor();
    expect(dialogs.length === 0, `the browser's own login dialog opened: ${dialogs}`);
  });

  await step('a wrong token is refused and asked again', async () => {
    await page.fill('[data-testid=token-prompt] input[name=token]', 'not-a-token');
    await page.click('[data-testid=token-prompt] button[type=submit]');
    await page.locator('[data-testid=token-prompt]:has-text("refused")').waitFor();
  });

  await step('the read token: the page shows the line', async () => {
    await page.fill('[data-testid=token-prompt] input[name=token]', readToken);
    await page.click('[data-testid=token-prompt] button[type=submit]');
    await page.locator(`tr.logline:has-text("${line}")`).first().waitFor();
    expect(await page.locator('[data-testid=token-prompt]').count() === 0, 'the prompt stayed');
  });

  await step('the token is in the tab, never in a URL', async () => {
    const kept = await page.evaluate(() => sessionStorage.getItem('lumen.token'));
    expect(kept === readToken, 'the token is not in sessionStorage');
    expect(!page.url().includes(readToken), 'the token is in the page URL');
    expect(!requests.some((u) => u.includes(readToken) || u.includes(encodeURIComponent(readToken))), 'the token is in a request URL');
  });

  await step('the live tail carries the token', async () => {
    await page.goto(`${base}/#/logs?q=${q}&live=1`);
    await page.waitForFunction(() => document.querySelector('[data-testid=live-status]')?.textContent === 'live');
    const body = JSON.stringify({ streams: [{ stream: { app: 'tokentest' }, values: [[`${Date.now()}000000`, 'live line with a token']] }] });
    const r = await fetch(`${base}/loki/api/v1/push`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${writeToken}` }, body });
    expect(r.status === 204, `push answered ${r.status}`);
    await page.locator('[data-testid=live-lines] tr:has-text("live line with a token")').waitFor();
  });

  await step('a reload keeps the token; another tab asks again', async () => {
    await page.goto(logsURL);
    await page.reload();
    await page.locator(`tr.logline:has-text("${line}")`).first().waitFor();
    expect(await page.locator('[data-testid=token-prompt]').count() === 0, 'asked again after a reload');
    const other = await (await browser.newContext()).newPage();
    await other.goto(logsURL);
    await other.locator('[data-testid=token-prompt]').waitFor({ timeout: 15000 });
  });

  await step('forget the token: asked again', async () => {
    await page.click('[data-testid=forget-token]');
    await page.locator('[data-testid=token-prompt]').waitFor();
  });
});
