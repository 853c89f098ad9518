// Cross-site request forgery against the whizard gateway with a real browser: headless Chromium
// (Debian `chromium`, driven by npm `playwright-core`) signs in to the gateway through its OpenID
// provider, then visits an attacker's page served from ANOTHER PORT of the same host — the same
// *site* as the gateway (so the `SameSite=Lax` session cookie goes along) but another *origin*.
//
// Run by tests/csrf_browser.rs, which judges what is reported here against the real upstreams
// (Alertmanager, Prometheus). This script judges nothing about the attacks: it fails only when
// the setup does not work (login, the same-origin controls).
//
// Environment:
//   GW_URL           the gateway (required)
//   IDP_URL          the provider's issuer (required): the login page must be served from there
//   UI_USER          account to sign in as (default alice)
//   READ_QUERY       expression of the same-origin read control (default up)
//   CONTROL_SILENCE  JSON of a silence posted from the gateway's own page (required)
//   ATTACK_SILENCE   JSON of the silence the attacker tries to create (required; its last member
//                    must be a string, so that a text/plain form can carry it: see below)
//   WRITE_BODY_B64   a snappy remote-write 1.0 body the attacker tries to write (required)
//   CHROMIUM         browser binary (default /usr/bin/chromium)
//   STEP_TIMEOUT_MS  timeout of each wait (default 30000)
//
// Steps (each prints `step NAME ...`; a failure prints `FAIL ...` and exits 1):
//   1. login: GET /graph → provider login page → sign in → back on the gateway with the cookie;
//   2. controls, from the gateway's own page (same origin, the cookie alone): a query (GET)
//      and a silence (POST application/json) — the cookie is live and may create silences — and
//      a remote write (which a cookie never may);
//   3. attacks, from http://127.0.0.1:<another port>/ in the same browser (same cookie jar):
//      form-text         <form enctype=text/plain> auto-submitted to /api/v2/silences; the field
//                        name is ATTACK_SILENCE minus its last two characters (`"}`) and the
//                        value `"}`, so the body is ATTACK_SILENCE with a `=` inside its last
//                        string: valid JSON (the classic text/plain JSON forgery)
//      form-urlencoded   <form> (application/x-www-form-urlencoded) with the silence's fields
//      fetch-write-nocors       fetch(/api/v1/write, {mode:'no-cors', method:'POST',
//                               credentials:'include', body: WRITE_BODY}) — no Content-Type,
//                               which a remote-write receiver reads as 1.0
//      fetch-write-nocors-typed the same asking for Content-Type application/x-protobuf and
//                               Content-Encoding snappy (no-cors drops both)
//      beacon-write             navigator.sendBeacon(/api/v1/write, WRITE_BODY)
//      fetch-silence-nocors     fetch(/api/v2/silences, no-cors, Content-Type text/plain,
//                               body ATTACK_SILENCE)
//      fetch-silence-cors-json  fetch(/api/v2/silences, mode cors, application/json): needs a
//                               preflight
//      fetch-delete-cors        fetch(DELETE /api/v2/silence/<the control silence>, mode cors)
//      fetch-write-cors         fetch(/api/v1/write, mode cors, application/x-protobuf)
//      fetch-read-nocors        fetch(GET /api/v1/query, no-cors): a read, allowed cross-origin
//                               (its answer is opaque to the page) — shows the cookie is sent
//   Every attack URL carries `csrf=<name>` in its query so its requests can be told apart.
//   What the browser did is taken from the network: each request to the gateway with its
//   method, path, body and the status the gateway answered or the network error (playwright
//   events), the headers as they went on the wire, cookie included (DevTools protocol: for
//   subresources playwright reports only the headers the page asked for), and the CORS
//   preflights (`preflight: true`); plus what the page's own script saw (`page_results`).
//   `attacker_server_got_session_cookie`: the attacker's own server received the session
//   cookie with its page loads (cookies are not isolated by port).
// On success the last line is `RESULT {json}` and the exit code is 0.

import * as http from 'node:http';
import { fail, gw, idp, launch, result, run, signIn, step, timeout } from './browser.mjs';

const readQuery = process.env.READ_QUERY || 'up';
const controlSilence = process.env.CONTROL_SILENCE || '';
const attackSilence = process.env.ATTACK_SILENCE || '';
const writeBodyB64 = process.env.WRITE_BODY_B64 || '';

Object.assign(result, { controls: {}, attacks: {}, page_results: {} });
let attackerServer;

const esc = (s) => String(s)
  .replace(/&/g, '&amp;')
  .replace(/"/g, '&quot;')
  .replace(/</g, '&lt;')
  .replace(/>/g, '&gt;');

// ---- the attacker's site ---------------------------------------------------------------------

function attackUrl(path, name) {
  return `${gw}${path}${path.includes('?') ? '&' : '?'}csrf=${name}`;
}

function formPage(name, enctype, fields) {
  const inputs = fields
    .map(([n, v]) => `<input type="hidden" name="${esc(n)}" value="${esc(v)}">`)
    .join('\n');
  return `<!doctype html><html><body>
<h1>Win a prize</h1>
<form id="f" method="POST" enctype="${esc(enctype)}" action="${esc(attackUrl('/api/v2/silences', name))}">
${inputs}
</form>
<script>document.getElementById('f').submit();</script>
</body></html>`;
}

function fetchPage(controlId) {
  // Runs in the attacker's origin. Each attempt records what the page itself could see.
  const attempts = {
    'fetch-write-nocors': { url: attackUrl('/api/v1/write', 'fetch-write-nocors'), init: { method: 'POST', mode: 'no-cors', credentials: 'include' }, body: 'write' },
    'fetch-write-nocors-typed': {
      url: attackUrl('/api/v1/write', 'fetch-write-nocors-typed'),
      init: {
        method: 'POST', mode: 'no-cors', credentials: 'include',
        headers: { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'snappy', 'X-Prometheus-Remote-Write-Version': '0.1.0' },
      },
      body: 'write',
    },
    'fetch-silence-nocors': {
      url: attackUrl('/api/v2/silences', 'fetch-silence-nocors'),
      init: { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'Content-Type': 'text/plain' } },
      body: 'silence',
    },
    'fetch-silence-cors-json': {
      url: attackUrl('/api/v2/silences', 'fetch-silence-cors-json'),
      init: { method: 'POST', mode: 'cors', credentials: 'include', headers: { 'Content-Type': 'application/json' } },
      body: 'silence',
    },
    'fetch-delete-cors': {
      url: attackUrl(`/api/v2/silence/${encodeURIComponent(controlId)}`, 'fetch-delete-cors'),
      init: { method: 'DELETE', mode: 'cors', credentials: 'include' },
    },
    'fetch-write-cors': {
      url: attackUrl('/api/v1/write', 'fetch-write-cors'),
      init: { method: 'POST', mode: 'cors', credentials: 'include', headers: { 'Content-Type': 'application/x-protobuf' } },
      body: 'write',
    },
    'fetch-read-nocors': {
      url: attackUrl(`/api/v1/query?query=${encodeURIComponent(readQuery)}`, 'fetch-read-nocors'),
      init: { method: 'GET', mode: 'no-cors', credentials: 'include' },
    },
  };
  return `<!doctype html><html><body>
<h1>Nothing to see</h1>
<script>
const writeBody = Uint8Array.from(atob(${JSON.stringify(writeBodyB64)}), (c) => c.charCodeAt(0));
const silence = ${JSON.stringify(attackSilence)};
const attempts = ${JSON.stringify(attempts)};
(async () => {
  const out = {};
  for (const [name, a] of Object.entries(attempts)) {
    const init = { ...a.init };
    if (a.body === 'write') init.body = writeBody;
    if (a.body === 'silence') init.body = silence;
    try {
      const r = await fetch(a.url, init);
      out[name] = { type: r.type, status: r.status };
    } catch (e) {
      out[name] = { error: String(e) };
    }
  }
  out['beacon-write'] = { queued: navigator.sendBeacon(${JSON.stringify(attackUrl('/api/v1/write', 'beacon-write'))}, writeBody) };
  window.__attacks = out;
})();
</script>
</body></html>`;
}

function startAttacker(controlId) {
  const pages = {
    '/form-text': () => {
      // text/plain: the body is `name=value\r\n`. ATTACK_SILENCE ends with `"}` (its last
      // member is a string): everything before that is the name, `"}` the value.
      if (!attackSilence.endsWith('"}')) fail('ATTACK_SILENCE must end with a string member');
      return formPage('form-text', 'text/plain', [[attackSilence.slice(0, -2), '"}']]);
    },
    '/form-urlencoded': () => {
      const s = JSON.parse(attackSilence);
      const fields = Object.entries(s).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
      return formPage('form-urlencoded', 'application/x-www-form-urlencoded', fields);
    },
    '/fetch': () => fetchPage(controlId),
  };
  const server = http.createServer((req, res) => {
    // Cookies are not isolated by port: the attacker's own server gets the session cookie too.
    if ((req.headers.cookie || '').includes('whizard_session=')) result.attacker_server_got_session_cookie = true;
    const page = pages[new URL(req.url, 'http://x').pathname];
    if (!page) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(page());
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// ---- network view ----------------------------------------------------------------------------

const lower = (headers) => Object.fromEntries(Object.entries(headers || {}).map(([k, v]) => [k.toLowerCase(), v]));

/**
 * Every request of `page` to the gateway whose URL has `csrf=NAME`, as the network saw it:
 * method, path, body and the gateway's status (or the network error) from playwright's events;
 * the headers as they went on the wire (cookie included) from the DevTools protocol, which
 * also shows CORS preflights (OPTIONS) that playwright does not report. A request that never
 * went on the wire (stopped by a failed preflight) has no wire headers (`headers: null`).
 * Returns `answered(name)` (the gateway answered a request of that attack) and `settle()`,
 * which waits for pending reads and fills `result.attacks`.
 */
async function watchAttacks(page) {
  const records = [];
  const pending = [];
  const attackName = (url) => {
    const u = new URL(url);
    return u.origin === gw ? u.searchParams.get('csrf') : null;
  };
  const byRequest = new Map();
  page.on('request', (req) => {
    const name = attackName(req.url());
    if (!name) return;
    const rec = {
      name,
      method: req.method(),
      url: req.url(),
      path: new URL(req.url()).pathname,
      navigation: req.isNavigationRequest(),
      preflight: false,
      status: null,
      failure: null,
      headers: null,
      body_b64: req.postDataBuffer() ? req.postDataBuffer().toString('base64') : null,
    };
    byRequest.set(req, rec);
    records.push(rec);
  });
  page.on('response', (resp) => {
    const rec = byRequest.get(resp.request());
    if (!rec) return;
    rec.status = resp.status();
    pending.push(resp.text().then((t) => {
      rec.answer = t.slice(0, 300);
    }).catch(() => {}));
  });
  page.on('requestfailed', (req) => {
    const rec = byRequest.get(req);
    if (rec) rec.failure = req.failure()?.errorText || 'failed';
  });

  // The wire, by DevTools request id.
  const wire = new Map(); // requestId -> { method, url, preflight, headers, status }
  const entry = (id) => {
    if (!wire.has(id)) wire.set(id, { method: null, url: null, preflight: false, headers: null, status: null });
    return wire.get(id);
  };
  const cdp = await page.context().newCDPSession(page);
  cdp.on('Network.requestWillBeSent', (e) => {
    const w = entry(e.requestId);
    w.method = e.request.method;
    w.url = e.request.url;
    w.preflight = e.type === 'Preflight' || e.request.method === 'OPTIONS';
  });
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
    entry(e.requestId).headers = lower(e.headers);
  });
  cdp.on('Network.responseReceived', (e) => {
    entry(e.requestId).status = e.response.status;
  });
  await cdp.send('Network.enable');

  const answered = (name) => records.some((r) => r.name === name && r.status !== null);
  const settle = async () => {
    await Promise.all(pending);
    const wires = [...wire.values()].filter((w) => w.url && attackName(w.url));
    for (const rec of records) {
      const w = wires.find((x) => !x.preflight && !x.used && x.method === rec.method && x.url === rec.url);
      if (w) {
        w.used = true;
        rec.headers = w.headers;
      }
    }
    for (const w of wires.filter((x) => x.preflight)) {
      records.push({
        name: attackName(w.url),
        method: w.method,
        url: w.url,
        path: new URL(w.url).pathname,
        navigation: false,
        preflight: true,
        status: w.status,
        failure: null,
        headers: w.headers,
        body_b64: null,
      });
    }
    for (const rec of records) (result.attacks[rec.name] ||= []).push(rec);
  };
  return { answered, settle };
}

// ---- main ------------------------------------------------------------------------------------

async function main() {
  if (!gw || !idp || !controlSilence || !attackSilence || !writeBodyB64) {
    fail('GW_URL, IDP_URL, CONTROL_SILENCE, ATTACK_SILENCE and WRITE_BODY_B64 are required');
  }
  const { context, page } = await launch({ width: 1200, height: 800 });

  // 1. Login.
  await page.goto(`${gw}/graph`);
  if (!page.url().startsWith(`${idp}/`)) {
    fail(`expected the provider's login page at ${idp}, got ${page.url()}`);
  }
  const { session } = await signIn(page);
  result.session_cookie = { sameSite: session.sameSite, httpOnly: session.httpOnly, domain: session.domain };
  step('logged-in', { url: page.url(), sameSite: session.sameSite });

  // 2. Controls from the gateway's own page.
  const controls = await page.evaluate(async ({ q, silence, bodyB64 }) => {
    const read = await fetch(`/api/v1/query?query=${encodeURIComponent(q)}`, { headers: { accept: 'application/json' } });
    const readBody = await read.text();
    const post = await fetch('/api/v2/silences', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: silence,
    });
    const postBody = await post.text();
    const write = await fetch('/api/v1/write', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'snappy' },
      body: Uint8Array.from(atob(bodyB64), (c) => c.charCodeAt(0)),
    });
    return {
      read: { status: read.status, body: readBody.slice(0, 2000) },
      silence: { status: post.status, body: postBody.slice(0, 500) },
      write: { status: write.status, body: (await write.text()).slice(0, 500) },
    };
  }, { q: readQuery, silence: controlSilence, bodyB64: writeBodyB64 });
  result.controls = controls;
  if (controls.read.status !== 200) fail(`same-origin read answered ${controls.read.status}: ${controls.read.body}`);
  if (controls.silence.status !== 200) {
    fail(`same-origin silence answered ${controls.silence.status}: ${controls.silence.body}`);
  }
  let controlId;
  try {
    controlId = JSON.parse(controls.silence.body).silenceID;
  } catch {
    // reported below
  }
  if (!controlId) fail(`no silenceID in ${controls.silence.body}`);
  result.control_silence_id = controlId;
  step('controls', { read: controls.read.status, silence: controlId, write: controls.write.status });

  // 3. Attacks from another origin of the same site, same browser profile.
  attackerServer = await startAttacker(controlId);
  const attacker = `http://127.0.0.1:${attackerServer.address().port}`;
  result.attacker_origin = attacker;
  const evil = await context.newPage();
  const watch = await watchAttacks(evil);
  for (const name of ['form-text', 'form-urlencoded']) {
    const [resp] = await Promise.all([
      evil.waitForResponse((r) => new URL(r.url()).searchParams.get('csrf') === name, { timeout }),
      evil.goto(`${attacker}/${name}`),
    ]);
    step(name, { status: resp.status() });
  }
  await evil.goto(`${attacker}/fetch`);
  await evil.waitForFunction(() => window.__attacks, null, { timeout });
  result.page_results = await evil.evaluate(() => window.__attacks);
  // The beacon is sent in the background: wait for the gateway's answer to it.
  const deadline = Date.now() + timeout;
  while (!watch.answered('beacon-write') && Date.now() < deadline) await evil.waitForTimeout(50);
  await watch.settle();
  step('attacks', {
    seen: Object.fromEntries(Object.entries(result.attacks).map(([k, v]) => [k, v.map((r) => `${r.method} ${r.status ?? r.failure}`)])),
  });

  result.ok = true;
  console.log(`RESULT ${JSON.stringify(result)}`);
}

await run(main, () => attackerServer?.close());
