// A real OpenID provider for whizard's tests: the npm package `oidc-provider` (version pinned in
// package.json), on plain HTTP on loopback (or HTTPS, optionally requiring client certificates:
// IDP_TLS_* below).
//
// Start:  node idp.mjs [PORT]        (or IDP_PORT=PORT node idp.mjs)
// Prints `ready ISSUER` (e.g. `ready http://127.0.0.1:PORT`) on stdout once it is listening.
// Stop it with SIGTERM.
//
// Environment (all optional):
//   IDP_PORT           port (default: argv[2], else 0 = any free port; the `ready` line has it)
//   IDP_ISSUER         issuer (default http://127.0.0.1:PORT)
//   IDP_AUDIENCE       `aud` of JWT access tokens (default whizard)
//   IDP_REDIRECT_URIS  comma-separated redirect URIs of the browser client `whizard-ui`
//                      (default http://127.0.0.1:8080/oauth2/callback)
//   IDP_POST_LOGOUT_REDIRECT_URIS  comma-separated, for RP-initiated logout (default none)
//   IDP_TOKEN_TTL      lifetime of access tokens in seconds (default 600)
//   IDP_KEYS_FILE      JSON file with the private JWKS: read when it exists, else written with
//                      fresh keys, and rewritten by /__rotate. Restarting with another file (or
//                      after deleting it) is a key rotation too.
//   IDP_CLIENTS        JSON list of extra machine clients, same shape as MACHINE_CLIENTS below
//   IDP_NO_REFRESH     1: no refresh tokens for the browser client (default: one per login)
//   IDP_ACCOUNT_CLAIMS JSON object {account: {claim: value, ...}}: extra ID-token claims of
//                      those accounts (e.g. {"alice":{"access":"read write"}}); the claim names
//                      are added to the `openid` scope. Default none.
//   IDP_TLS_CERT, IDP_TLS_KEY  PEM files: serve HTTPS instead of HTTP (default issuer
//                      https://127.0.0.1:PORT); the admin endpoints below are on it too.
//   IDP_TLS_CLIENT_CA  PEM file (with IDP_TLS_*): every connection must present a client
//                      certificate issued by this CA, else the handshake fails. Each handshake
//                      is logged: `tls-client CN=<subject CN>` or `tls-refused <reason>`
//                      (`authorizationError=CODE` for a certificate that does not verify).
//
// Machine clients (grant client_credentials, secret via client_secret_basic or _post). Access
// tokens are JWTs (RFC 9068, typ at+jwt) with iss, aud=IDP_AUDIENCE, sub=client_id, client_id,
// exp, `tenant` (from the table) and `scope` (the requested scopes among `read write`; when
// none were requested, the client's default_scope):
//   client_id    secret              tenant claim          default_scope
//   agent-a      agent-a-secret      "team-a"              "write"
//   agent-b      agent-b-secret      "team-b"              "write"
//   agent-ab     agent-ab-secret     ["team-a","team-b"]   "read write"
//   reader-a     reader-a-secret     "team-a"              "read"
//   agent-none   agent-none-secret   (no tenant claim)     "read write"
// Resource indicators (`resource` parameter; default urn:whizard) choose audience and algorithm:
//   urn:whizard → aud IDP_AUDIENCE, RS256      urn:whizard:ps256 → PS256
//   urn:whizard:es256 → ES256                  urn:whizard:eddsa → EdDSA
//   urn:other → aud "other" (a token for another API), RS256
//
// Browser client: `whizard-ui` / `whizard-ui-secret`, authorization code + PKCE (S256),
// client_secret_basic, a refresh token with every login (revocable at /token/revocation). The
// login page is oidc-provider's dev interaction: any login name with
// any password signs in, and consent is skipped. ID tokens carry sub, preferred_username, name,
// email, and for the account:
//   alice → tenant "team-a", groups ["devs"]     bob → tenant "team-b"
//   carol → tenant ["team-a","team-b"]           dave → no tenant, groups ["ops"]
//   NAME@TENANT (e.g. erin@team-c) → tenant "TENANT"
//   anything else → no tenant claim
//
// Test-only admin endpoints (no auth: loopback tests only):
//   POST /__rotate[?keep_old=0]  new RSA, EC P-256 and Ed25519 signing keys; new tokens use
//        them. Old public keys stay in the JWKS unless keep_old=0. Answers {"kids":[...]}.
//   POST /__sign  body {"payload":{...},"alg":"RS256","kid":"...","typ":"at+jwt","defaults":true}
//        signs a JWT with the provider's current key for `alg` (RS256, PS256, ES256, EdDSA).
//        With defaults (the default), iss/aud/iat/exp(+300s)/sub are filled in when absent;
//        a payload value of null removes that claim. Answers {"token":"..."}.
//   GET  /__keys  the public JWKS the provider serves now (same as jwks_uri).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.IDP_PORT || process.argv[2] || 0);
const audience = process.env.IDP_AUDIENCE || 'whizard';
const tokenTtl = Number(process.env.IDP_TOKEN_TTL || 600);
const redirectUris = (process.env.IDP_REDIRECT_URIS || 'http://127.0.0.1:8080/oauth2/callback')
  .split(',').map((s) => s.trim()).filter(Boolean);
const postLogoutRedirectUris = (process.env.IDP_POST_LOGOUT_REDIRECT_URIS || '')
  .split(',').map((s) => s.trim()).filter(Boolean);
const keysFile = process.env.IDP_KEYS_FILE;
const accountExtra = JSON.parse(process.env.IDP_ACCOUNT_CLAIMS || '{}');
const extraClaimNames = [...new Set(Object.values(accountExtra).flatMap((c) => Object.keys(c)))];
const tlsFiles = process.env.IDP_TLS_CERT && process.env.IDP_TLS_KEY
  ? {
    cert: process.env.IDP_TLS_CERT,
    key: process.env.IDP_TLS_KEY,
    clientCa: process.env.IDP_TLS_CLIENT_CA,
  }
  : null;

const MACHINE_CLIENTS = [
  { client_id: 'agent-a', client_secret: 'agent-a-secret', tenant: 'team-a', default_scope: 'write' },
  { client_id: 'agent-b', client_secret: 'agent-b-secret', tenant: 'team-b', default_scope: 'write' },
  { client_id: 'agent-ab', client_secret: 'agent-ab-secret', tenant: ['team-a', 'team-b'], default_scope: 'read write' },
  { client_id: 'reader-a', client_secret: 'reader-a-secret', tenant: 'team-a', default_scope: 'read' },
  { client_id: 'agent-none', client_secret: 'agent-none-secret', default_scope: 'read write' },
  ...JSON.parse(process.env.IDP_CLIENTS || '[]'),
];
const machineById = new Map(MACHINE_CLIENTS.map((c) => [c.client_id, c]));

const RESOURCES = {
  'urn:whizard': { audience, alg: 'RS256' },
  'urn:whizard:ps256': { audience, alg: 'PS256' },
  'urn:whizard:es256': { audience, alg: 'ES256' },
  'urn:whizard:eddsa': { audience, alg: 'EdDSA' },
  'urn:other': { audience: 'other', alg: 'RS256' },
};

const ACCOUNTS = {
  alice: { tenant: 'team-a', groups: ['devs'] },
  bob: { tenant: 'team-b' },
  carol: { tenant: ['team-a', 'team-b'] },
  dave: { groups: ['ops'] },
};

function accountClaims(id) {
  const claims = {
    sub: id,
    preferred_username: id,
    name: id,
    email: id.includes('@') ? id : `${id}@example.test`,
  };
  const known = ACCOUNTS[id];
  if (known) {
    if (known.tenant !== undefined) claims.tenant = known.tenant;
    if (known.groups !== undefined) claims.groups = known.groups;
  } else {
    const at = id.lastIndexOf('@');
    if (at > 0 && at < id.length - 1) claims.tenant = id.slice(at + 1);
  }
  return { ...claims, ...(accountExtra[id] || {}) };
}

// ---- keys ----------------------------------------------------------------------------------

function newKeys() {
  const jwk = (pair) => pair.privateKey.export({ format: 'jwk' });
  const stamp = Date.now().toString(36) + crypto.randomBytes(3).toString('hex');
  return [
    { ...jwk(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })), kid: `rsa-${stamp}`, use: 'sig' },
    { ...jwk(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })), kid: `ec-${stamp}`, use: 'sig' },
    { ...jwk(crypto.generateKeyPairSync('ed25519')), kid: `ed-${stamp}`, use: 'sig' },
  ];
}

function loadKeys() {
  if (keysFile && fs.existsSync(keysFile)) {
    return JSON.parse(fs.readFileSync(keysFile, 'utf8')).keys;
  }
  const keys = newKeys();
  saveKeys(keys);
  return keys;
}

function saveKeys(keys) {
  if (keysFile) fs.writeFileSync(keysFile, JSON.stringify({ keys }, null, 2), { mode: 0o600 });
}

let keys = loadKeys();
const cookieKeys = [crypto.randomBytes(32).toString('hex')];

// ---- provider ------------------------------------------------------------------------------

function buildProvider(issuer) {
  const clients = [
    ...MACHINE_CLIENTS.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: c.auth_method || 'client_secret_basic',
    })),
    // The same machine clients accept client_secret_post under a `-post` suffix.
    ...MACHINE_CLIENTS.map((c) => ({
      client_id: `${c.client_id}-post`,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    })),
    {
      client_id: 'whizard-ui',
      client_secret: 'whizard-ui-secret',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: redirectUris,
      post_logout_redirect_uris: postLogoutRedirectUris,
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ];

  const machineOf = (clientId) => machineById.get(clientId) || machineById.get(clientId?.replace(/-post$/, ''));

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys },
    cookies: { keys: cookieKeys },
    claims: {
      openid: ['sub', 'tenant', 'groups', ...extraClaimNames],
      profile: ['name', 'preferred_username'],
      email: ['email'],
    },
    // ID tokens carry the scope's claims even when an access token is issued too.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      // Logout at the gateway revokes the session's refresh token (RFC 7009).
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Machine clients get urn:whizard unless they ask for another resource; the browser
        // client gets no resource (its access token is for userinfo only).
        defaultResource: async (ctx, client, oneOf) => {
          if (oneOf) return oneOf;
          return machineOf(client?.clientId) ? 'urn:whizard' : undefined;
        },
        useGrantedResource: async () => false,
        getResourceServerInfo: async (ctx, resourceIndicator) => {
          const r = RESOURCES[resourceIndicator];
          if (!r) throw new errors.InvalidTarget();
          return {
            scope: 'read write',
            audience: r.audience,
            accessTokenTTL: tokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: r.alg } },
          };
        },
      },
    },
    extraTokenClaims: async (ctx, token) => {
      const c = machineOf(token.clientId);
      if (c && c.tenant !== undefined && !token.accountId) return { tenant: c.tenant };
      return undefined;
    },
    formats: {
      customizers: {
        jwt: async (ctx, token, jwt) => {
          const c = machineOf(token.clientId);
          if (c && !token.accountId && !jwt.payload.scope && c.default_scope) {
            jwt.payload.scope = c.default_scope;
          }
        },
      },
    },
    findAccount: async (ctx, sub) => ({
      accountId: sub,
      claims: async () => accountClaims(sub),
    }),
    // The browser client gets a refresh token with every login (without `offline_access`):
    // the gateway renews its sessions with it. IDP_NO_REFRESH=1 turns that off.
    issueRefreshToken: async (ctx, client) => process.env.IDP_NO_REFRESH !== '1'
      && client.grantTypeAllowed('refresh_token'),
    // First-party client: skip the consent screen.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const found = await ctx.oidc.provider.Grant.find(grantId);
        if (found) return found;
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid profile email');
      await grant.save();
      return grant;
    },
    ttl: {
      ClientCredentials: () => tokenTtl,
      AccessToken: () => tokenTtl,
      IdToken: () => tokenTtl,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 3600,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

// ---- signing for /__sign ------------------------------------------------------------------

const b64u = (buf) => Buffer.from(buf).toString('base64url');

function signingKey(alg, kid) {
  const wantKty = { RS256: 'RSA', PS256: 'RSA', ES256: 'EC', EdDSA: 'OKP' }[alg];
  if (!wantKty) throw new Error(`unsupported alg ${alg}`);
  const jwk = keys.find((k) => (kid ? k.kid === kid : k.kty === wantKty));
  if (!jwk) throw new Error(`no key for ${alg} ${kid || ''}`);
  return { jwk, key: crypto.createPrivateKey({ key: jwk, format: 'jwk' }) };
}

function signJwt({ payload = {}, alg = 'RS256', kid, typ = 'at+jwt', defaults = true, header = {} }) {
  const now = Math.floor(Date.now() / 1000);
  let claims = { ...payload };
  if (defaults) {
    claims = {
      iss: currentIssuer, aud: audience, sub: 'test', iat: now, exp: now + 300, ...claims,
    };
  }
  for (const [k, v] of Object.entries(claims)) if (v === null) delete claims[k];
  const { jwk, key } = signingKey(alg, kid);
  const head = { alg, typ, kid: jwk.kid, ...header };
  for (const [k, v] of Object.entries(head)) if (v === null) delete head[k];
  const input = `${b64u(JSON.stringify(head))}.${b64u(JSON.stringify(claims))}`;
  let sig;
  switch (alg) {
    case 'RS256':
      sig = crypto.sign('sha256', Buffer.from(input), key);
      break;
    case 'PS256':
      sig = crypto.sign('sha256', Buffer.from(input), {
        key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32,
      });
      break;
    case 'ES256':
      sig = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
      break;
    case 'EdDSA':
      sig = crypto.sign(null, Buffer.from(input), key);
      break;
    default:
      throw new Error(`unsupported alg ${alg}`);
  }
  return `${input}.${b64u(sig)}`;
}

function publicJwks() {
  return {
    keys: keys.map((k) => {
      const pub = crypto.createPublicKey({ key: k, format: 'jwk' }).export({ format: 'jwk' });
      return { ...pub, kid: k.kid, use: 'sig' };
    }),
  };
}

// ---- server --------------------------------------------------------------------------------

let currentIssuer;
let provider;
let handler;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

async function serve(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  try {
    if (req.method === 'POST' && url.pathname === '/__rotate') {
      const fresh = newKeys();
      keys = url.searchParams.get('keep_old') === '0' ? fresh : [...fresh, ...keys];
      saveKeys(keys);
      provider = buildProvider(currentIssuer);
      handler = provider.callback();
      console.log(`rotated keys: ${keys.map((k) => k.kid).join(' ')}`);
      return sendJson(res, 200, { kids: keys.map((k) => k.kid) });
    }
    if (req.method === 'POST' && url.pathname === '/__sign') {
      const body = JSON.parse((await readBody(req)) || '{}');
      return sendJson(res, 200, { token: signJwt(body) });
    }
    if (req.method === 'GET' && url.pathname === '/__keys') {
      return sendJson(res, 200, publicJwks());
    }
  } catch (e) {
    return sendJson(res, 400, { error: String(e?.message || e) });
  }
  if (!handler) return sendJson(res, 503, { error: 'starting' });
  return handler(req, res);
}

let server;
if (tlsFiles) {
  const options = {
    cert: fs.readFileSync(tlsFiles.cert),
    key: fs.readFileSync(tlsFiles.key),
  };
  if (tlsFiles.clientCa) {
    options.ca = fs.readFileSync(tlsFiles.clientCa);
    options.requestCert = true;
    options.rejectUnauthorized = true;
  }
  server = https.createServer(options, serve);
  server.on('secureConnection', (socket) => {
    const cn = socket.getPeerCertificate()?.subject?.CN;
    console.log(`tls-client CN=${cn || '<none>'}`);
  });
  // A certificate that does not verify ends the connection after the handshake (Node checks it
  // then): its reason is the socket's authorizationError, not the error's message.
  server.on('tlsClientError', (err, socket) => {
    const why = socket?.authorizationError ? `authorizationError=${socket.authorizationError} ` : '';
    console.log(`tls-refused ${why}${err.code || ''} ${err.message}`);
    // Closed here rather than left to Node: a listener on this event makes the socket its
    // business, and a refused TLS 1.3 client (whose side of the handshake is already done)
    // once waited out its 20 s bound on a connection that was never closed.
    socket?.destroy();
  });
} else {
  server = http.createServer(serve);
}

server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  const scheme = tlsFiles ? 'https' : 'http';
  currentIssuer = process.env.IDP_ISSUER || `${scheme}://127.0.0.1:${actual}`;
  provider = buildProvider(currentIssuer);
  handler = provider.callback();
  console.log(`ready ${currentIssuer}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
