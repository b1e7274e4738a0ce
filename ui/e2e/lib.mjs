// What the browser scripts share: Debian's Chromium, headless, started by
// playwright-core, and steps that name what failed.
import { chromium } from 'playwright-core';

export function launch() {
  return chromium.launch({
    executablePath: process.env.LUMEN_CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

// steps returns step(name, fn), which prints `STEP name` and runs fn, and
// expect(cond, msg) and fail(msg), which throw naming the current step.
export function steps() {
  let current = '';
  const fail = (msg) => { throw new Error(`${current}: ${msg}`); };
  return {
    fail,
    expect: (cond, msg) => { if (!cond) fail(msg); },
    step: async (name, fn) => {
      current = name;
      console.log(`STEP ${name}`);
      await fn();
    },
  };
}

// run runs fn, prints PASS, or the error and exits non-zero; the browser
// is closed either way.
export async function run(browser, fn) {
  try {
    await fn();
    console.log('PASS');
  } catch (e) {
    console.error(String(e?.stack ?? e));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
