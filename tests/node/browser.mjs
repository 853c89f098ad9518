// What the browser scripts (ui_login.mjs, attacker.mjs) share: their common environment, the
// step log and result, headless Chromium, the sign-in at the provider's login form, and the
// `RESULT {json}` / exit code protocol that the Rust tests read.
//
// Environment:
//   GW_URL          the gateway (required)
//   IDP_URL         the provider's issuer (required): the login page must be served from there
//   UI_USER         account to sign in as (default alice)
//   CHROMIUM        browser binary (default /usr/bin/chromium)
//   STEP_TIMEOUT_MS timeout of each wait (default 30000)

import { chromium } from 'playwright-core';

export const gw = (process.env.GW_URL || '').replace(/\/$/, '');
export const idp = (process.env.IDP_URL || '').replace(/\/$/, '');
export const user = process.env.UI_USER || 'alice';
export const timeout = Number(process.env.STEP_TIMEOUT_MS || 30000);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

/** What the script reports on its last line; `steps` are the names of the steps done. */
export const result = { steps: [] };
let browser;

export function step(name, detail = {}) {
  result.steps.push(name);
  console.log(`step ${name} ${JSON.stringify(detail)}`);
}

export class Fail extends Error {}
export function fail(msg) {
  throw new Fail(msg);
}

/** Headless Chromium: a context of `viewport` with the step timeout, and a page of it. */
export async function launch(viewport) {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--no-proxy-server',
    ],
  });
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(timeout);
  context.setDefaultNavigationTimeout(timeout);
  return { context, page: await context.newPage() };
}

/**
 * Signs in as UI_USER on the provider's login form `page` shows (oidc-provider dev interaction:
 * any password), waits until the browser is back on the gateway, past /oauth2/, and returns the
 * gateway's cookies and its `whizard_session` cookie (fails without one).
 */
export async function signIn(page) {
  await page.locator('input[name="login"]').fill(user);
  await page.locator('input[name="password"]').fill('any-password');
  await Promise.all([
    page.waitForURL((u) => u.origin === gw && !u.pathname.startsWith('/oauth2/'), { timeout }),
    page.locator('button[type="submit"]').click(),
  ]);
  await page.waitForLoadState('load');
  const cookies = await page.context().cookies(gw);
  const session = cookies.find((c) => c.name === 'whizard_session');
  if (!session) fail(`no whizard_session cookie after login; cookies: ${cookies.map((c) => c.name)}`);
  return { cookies, session };
}

/**
 * Runs `main`, then `cleanup`; prints `RESULT {json}` (`ok: false` and `FAIL ...` before it
 * when `main` throws) and exits 0 or 1. `main` prints the successful RESULT itself.
 */
export async function run(main, cleanup = () => {}) {
  try {
    await main();
    await browser?.close();
    cleanup();
    process.exit(0);
  } catch (e) {
    console.log(`FAIL ${e instanceof Fail ? e.message : (e && e.stack) || e}`);
    console.log(`RESULT ${JSON.stringify({ ...result, ok: false })}`);
    try {
      await browser?.close();
    } catch {
      // ignore
    }
    process.exit(1);
  }
}
