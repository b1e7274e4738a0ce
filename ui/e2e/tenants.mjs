// Browser test of the UI against a `lumen serve` with tenants
// (cmd/lumen/ui_test.go, TestUISwitchesTenants). It reads:
//   LUMEN_URL           the server's HTTP address
//   LUMEN_OPS_TOKEN     a read token that may choose tenants team-a and team-b
//   LUMEN_TEAM_A_TOKEN  a token bound to team-a (write), LUMEN_TEAM_B_TOKEN to team-b
//   LUMEN_CHROMIUM      the browser
// The server holds, in {app="shop"}, "checkout of team-a" in team-a and
// "checkout of team-b" in team-b. It prints `STEP …` as it goes and exits
// non-zero on the first failed expectation.
import { launch, run, steps } from './lib.mjs';

const base = process.env.LUMEN_URL;
const browser = await launch();
const { expect, step } = steps();
const q = encodeURIComponent('{app="shop"}');
const logsURL = `${base}/#/logs?q=${q}&from=now-1h&to=now`;
const line = (team) => `tr.logline:has-text("checkout of ${team}")`;

async function push(token, text) {
  const body = JSON.stringify({ streams: [{ stream: { app: 'shop' }, values: [[`${Date.now()}000000`, text]] }] });
  const r = await fetch(`${base}/loki/api/v1/push`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }, body });
  expect(r.status === 204, `push answered ${r.status}`);
}

await run(browser, async () => {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(15000);

  await step('the token: the first of its tenants, and its lines only', async () => {
    await page.goto(logsURL);
    await page.fill('[data-testid=token-prompt] input[name=token]', process.env.LUMEN_OPS_TOKEN);
    await page.click('[data-testid=token-prompt] button[type=submit]');
    await page.locator('[data-testid=tenant-select]').waitFor();
    expect(await page.locator('[data-testid=tenant-select]').inputValue() === 'team-a', 'team-a is not the tenant shown');
    await page.locator(line('team-a')).first().waitFor();
    expect(await page.locator(line('team-b')).count() === 0, "team-b's line shows in team-a");
  });

  await step('switch to team-b: its lines only', async () => {
    await page.selectOption('[data-testid=tenant-select]', 'team-b');
    await page.locator(line('team-b')).first().waitFor();
    expect(await page.locator(line('team-a')).count() === 0, "team-a's line shows in team-b");
    expect(await page.evaluate(() => sessionStorage.getItem('lumen.tenant')) === 'team-b', 'the tenant is not kept in the tab');
  });

  await step("the live tail follows the tenant: team-b's new lines, not team-a's", async () => {
    await page.goto(`${base}/#/logs?q=${q}&live=1`);
    await page.waitForFunction(() => document.querySelector('[data-testid=live-status]')?.textContent === 'live');
    await push(process.env.LUMEN_TEAM_A_TOKEN, 'live line of team-a');
    await push(process.env.LUMEN_TEAM_B_TOKEN, 'live line of team-b');
    await page.locator('[data-testid=live-lines] tr:has-text("live line of team-b")').waitFor();
    expect(await page.locator('[data-testid=live-lines] tr:has-text("live line of team-a")').count() === 0, "team-a's live line in team-b's tail");
  });

  await step('a reload keeps the tenant', async () => {
    await page.goto(logsURL);
    await page.reload();
    await page.locator(line('team-b')).first().waitFor();
    expect(await page.locator('[data-testid=tenant-select]').inputValue() === 'team-b', 'the tenant was lost');
  });
});
