// Headless Chromium (Debian `chromium`, driven by npm `playwright-core`) logging in to the whizard
// gateway through its OpenID provider and running a query in the web UI behind it.
//
// Run by tests/oidc_e2e.rs; by hand:
//   GW_URL=http://127.0.0.1:PORT IDP_URL=http://127.0.0.1:PORT2 node tests/node/ui_login.mjs
//
// Environment:
//   GW_URL          the gateway (required)
//   IDP_URL         the provider's issuer (required): the login page must be served from there
//   UI_USER         account to sign in as (default alice)
//   UI_QUERY        expression typed into the UI (default up)
//   EXPECT_TENANT   tenant whose series must be shown (default team-a)
//   FORBID_TENANT   tenant whose series must not be shown (default team-b)
//   SCREENSHOT      PNG path written after the query (default tests/out/ui_query.png)
//   CHROMIUM        browser binary (default /usr/bin/chromium)
//   STEP_TIMEOUT_MS timeout of each wait (default 30000)
//
// Steps (each prints `step NAME ...` on stdout; a failure prints `FAIL ...` and exits 1):
//   1. GET /graph as a browser → the gateway answers 302 /oauth2/login?rd=%2Fgraph → the
//      provider's login page;
//   2. signs in (oidc-provider dev interaction: any password) → /oauth2/callback → back to /graph
//      with an HttpOnly, SameSite=Lax `whizard_session` cookie;
//   3. the UI loads through the gateway (the React UI of Prometheus/Thanos — CodeMirror editor — or
//      the classic Prometheus UI — textarea), UI_QUERY is typed and executed, the result table
//      shows EXPECT_TENANT's series and none of FORBID_TENANT; a screenshot is written;
//   4. /oauth2/logout ends the session: /graph is again answered with 302 to /oauth2/login, and a
//      copy of the old cookie no longer works for the API (401).
// On success the last line is `RESULT {json}` and the exit code is 0.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fail, gw, idp, launch, result, run, signIn, step, timeout } from './browser.mjs';

const query = process.env.UI_QUERY || 'up';
const expectTenant = process.env.EXPECT_TENANT || 'team-a';
const forbidTenant = process.env.FORBID_TENANT || 'team-b';
const shot = process.env.SCREENSHOT || 'tests/out/ui_query.png';

/** The chain of responses that led to `response` (first request first). */
function redirectChain(response) {
  const chain = [];
  let req = response.request();
  while (req) {
    chain.unshift(req);
    req = req.redirectedFrom();
  }
  return chain;
}

async function describeChain(response) {
  const out = [];
  for (const req of redirectChain(response)) {
    const resp = await req.response();
    out.push({
      url: req.url(),
      status: resp ? resp.status() : null,
      location: resp ? (await resp.headerValue('location')) : null,
    });
  }
  return out;
}

async function bodyText(page) {
  try {
    return (await page.locator('body').innerText({ timeout: 2000 })).slice(0, 800);
  } catch {
    return '<no body>';
  }
}

/**
 * Asserts that a navigation to /graph was answered by the gateway's redirect to login before
 * anything else of the gateway: the first hop that is not a permanent redirect (the browser
 * may have cached the UI's own `301 /graph → /graph/`) must be `302 /oauth2/login?rd=<path>`.
 */
function assertLoginRedirect(chain, when, exactRd) {
  const first = chain.find((h) => h.url.startsWith(`${gw}/`) && h.status !== 301 && h.status !== 308);
  const want = exactRd ? `/oauth2/login?rd=${encodeURIComponent(exactRd)}` : '/oauth2/login?rd=%2F';
  const ok = first && first.status === 302 && first.location
    && (exactRd ? first.location === want : first.location.startsWith(want));
  if (!ok) fail(`${when}: GET /graph was not redirected to ${want}...: ${JSON.stringify(chain)}`);
}

async function main() {
  if (!gw || !idp) fail('GW_URL and IDP_URL are required');
  const { context, page } = await launch({ width: 1400, height: 900 });
  const consoleErrors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text().slice(0, 300));
  });
  let lastNavigation = null;
  page.on('response', (r) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) lastNavigation = r;
  });
  const apiCalls = [];
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.origin === gw && u.pathname.startsWith('/api/')) {
      apiCalls.push({ method: r.request().method(), path: u.pathname, status: r.status() });
    }
  });

  // 1. Unauthenticated: redirected to the provider's login page.
  let resp = await page.goto(`${gw}/graph`);
  let chain = await describeChain(resp);
  assertLoginRedirect(chain, 'before login', '/graph');
  if (!page.url().startsWith(`${idp}/`)) {
    fail(`expected the provider's login page at ${idp}, got ${page.url()}: ${await bodyText(page)}`);
  }
  const loginInput = page.locator('input[name="login"]');
  await loginInput.waitFor({ state: 'visible' });
  step('redirected-to-idp', { url: page.url(), chain });

  // 2. Sign in.
  const { cookies, session } = await signIn(page);
  const landed = new URL(page.url());
  if (!session.httpOnly) fail('whizard_session is not HttpOnly');
  if (session.sameSite !== 'Lax') fail(`whizard_session SameSite=${session.sameSite}, want Lax`);
  if (session.secure) fail('whizard_session is Secure on plain HTTP (the browser would drop it)');
  const flowCookie = cookies.find((c) => c.name === 'whizard_login' && c.value);
  if (flowCookie) fail('the login-flow cookie was not cleared after the callback');
  step('logged-in', { landed: landed.pathname + landed.search });
  result.session_cookie = { httpOnly: session.httpOnly, sameSite: session.sameSite, expires: session.expires };

  // 3. The UI, through the gateway.
  if (lastNavigation && lastNavigation.status() >= 400) {
    fail(
      `the web UI did not load through the gateway: ${lastNavigation.request().method()} ` +
        `${lastNavigation.url()} answered ${lastNavigation.status()}: ${await bodyText(page)}`,
    );
  }
  const react = page.locator('.cm-content[contenteditable="true"]');
  const classic = page.locator('textarea.expression_input');
  try {
    await page.waitForFunction(
      () => document.querySelector('.cm-content[contenteditable="true"], textarea.expression_input'),
      null,
      { timeout },
    );
  } catch {
    fail(
      `the web UI did not load through the gateway at ${page.url()} (after the login the ` +
        `browser went through ${JSON.stringify(landed.pathname)}): ${await bodyText(page)}`,
    );
  }
  let kind;
  if (await react.count()) {
    kind = 'react';
    await react.first().click();
    await page.keyboard.type(query);
    await page.keyboard.press('Escape'); // close the autocomplete popup
    // The Table tab is the default; click it anyway when present.
    const tableTab = page.getByRole('tab', { name: 'Table' }).or(page.locator('a.nav-link', { hasText: 'Table' }));
    if (await tableTab.count()) await tableTab.first().click();
    await page.locator('button.execute-btn, button:has-text("Execute")').first().click();
  } else {
    kind = 'classic';
    await classic.first().fill(query);
    await page.keyboard.press('Escape'); // close the typeahead
    const consoleTab = page.locator('a.nav-link[href^="#console"]');
    if (await consoleTab.count()) await consoleTab.first().click();
    await page.locator('input.execute_btn').first().click();
  }
  step('query-executed', { ui: kind, query });
  result.ui = kind;

  // Wait for result rows naming the tenant label (or an error shown by the UI).
  const rowsSelector = kind === 'react' ? '.data-table tbody tr, table tbody tr' : '.console table tr, table tr';
  const errorSelector = kind === 'react' ? '.alert-danger' : '.alert-danger:visible, .error:visible';
  let tableText;
  const deadline = Date.now() + timeout;
  for (;;) {
    const texts = await page.locator(rowsSelector).allInnerTexts();
    tableText = texts.join('\n');
    if (tableText.includes('tenant_id=')) break;
    const err = await page.locator(errorSelector).allInnerTexts().catch(() => []);
    const errText = err.join(' ').trim();
    if (errText) fail(`the UI showed an error for ${query}: ${errText}; API calls: ${JSON.stringify(apiCalls)}`);
    if (Date.now() > deadline) {
      fail(`no result rows with tenant_id within ${timeout}ms; table: ${JSON.stringify(tableText)}; ` +
        `API calls: ${JSON.stringify(apiCalls)}; page: ${await bodyText(page)}`);
    }
    await page.waitForTimeout(100);
  }
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  const seriesLines = tableText.split('\n').filter((l) => l.includes('{'));
  result.series = seriesLines;
  result.screenshot = shot;
  if (!tableText.includes(`tenant_id="${expectTenant}"`)) {
    fail(`result does not show tenant_id="${expectTenant}": ${tableText}`);
  }
  if (tableText.includes(forbidTenant)) {
    fail(`result shows the other tenant ${forbidTenant}: ${tableText}`);
  }
  const queryCalls = apiCalls.filter((c) => c.path === '/api/v1/query' || c.path === '/api/v1/query_range');
  if (!queryCalls.some((c) => c.status === 200)) {
    fail(`no successful query API call went through the gateway: ${JSON.stringify(apiCalls)}`);
  }
  result.api_calls = apiCalls;
  step('result-checked', { rows: seriesLines.length, screenshot: shot });

  // 4. Logout ends the session.
  resp = await page.goto(`${gw}/oauth2/logout`);
  if (!resp || resp.status() >= 400) fail(`logout answered ${resp && resp.status()}`);
  const after = await context.cookies(gw);
  if (after.some((c) => c.name === 'whizard_session' && c.value)) {
    fail('whizard_session cookie still set after logout');
  }
  step('logged-out', { status: resp.status() });

  // The old cookie, replayed by hand, is refused: 401 for an API client...
  const replay = await context.request.get(`${gw}/api/v1/query?query=${encodeURIComponent(query)}`, {
    headers: { cookie: `whizard_session=${session.value}`, accept: 'application/json' },
    maxRedirects: 0,
  });
  if (replay.status() !== 401) fail(`old session cookie after logout: API answered ${replay.status()}, want 401`);
  // ... and a redirect to login for a browser.
  const replayPage = await context.request.get(`${gw}/graph`, {
    headers: { cookie: `whizard_session=${session.value}`, accept: 'text/html' },
    maxRedirects: 0,
  });
  const loc = replayPage.headers().location || '';
  if (replayPage.status() !== 302 || !loc.startsWith('/oauth2/login')) {
    fail(`old session cookie after logout: /graph answered ${replayPage.status()} ${loc}, want 302 to login`);
  }
  // The browser itself is sent to login again (the provider may sign it in silently: its own
  // session is still alive; what matters is the gateway's redirect).
  resp = await page.goto(`${gw}/graph`);
  chain = await describeChain(resp);
  assertLoginRedirect(chain, 'after logout', null);
  step('login-required-again', { chain });

  result.console_errors = consoleErrors;
  result.ok = true;
  console.log(`RESULT ${JSON.stringify(result)}`);
}

await run(main);
