// Hệ thống quản lý văn bản (document management): a minimal relying party of sso-gateway in
// Node.js with openid-client 6 and nothing else (node:http, an in-memory session store).
//
// openid-client does the OpenID Connect work: discovery, authorization code + PKCE (S256) +
// nonce + state, the RFC 9207 `iss` check, ID token validation, /userinfo, refresh, token
// introspection and the end-session URL. The app shows what every city system adds itself:
// server-side sessions (tokens never go into a cookie), a protected API of its own that
// accepts the gateway's access tokens by introspecting them, and a back-channel logout
// receiver.
//
// Its routes are the ones registered in docs/integrate/document-management.md:
//   /auth/callback             redirect_uris
//   /auth/logged-out           post_logout_redirect_uris
//   /auth/backchannel-logout   backchannel_logout_uri
//
// Configuration (environment):
//   SSO_ISSUER         the gateway's issuer URL (discovery is read from it)
//   SSO_CLIENT_ID      default "quan-ly-van-ban"
//   SSO_CLIENT_SECRET  the client secret registered at the gateway
//   APP_BASE_URL       this app's public base URL; it listens on 127.0.0.1 and that URL's port
//   SSO_SCOPE          default "openid profile email official"
//   SSO_ALLOW_HTTP=1   only for a gateway on plain http (local development, tests)
//
// Run: node app.mjs   (it prints "listening on URL" once it accepts connections)

import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import * as oidc from 'openid-client'

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback
  if (v === undefined) {
    console.error(`missing environment variable ${name}`)
    process.exit(2)
  }
  return v
}

const ISSUER = env('SSO_ISSUER').replace(/\/$/, '')
const CLIENT_ID = env('SSO_CLIENT_ID', 'quan-ly-van-ban')
const CLIENT_SECRET = env('SSO_CLIENT_SECRET')
const BASE_URL = env('APP_BASE_URL').replace(/\/$/, '')
const SCOPE = env('SSO_SCOPE', 'openid profile email official')
const ALLOW_HTTP = process.env.SSO_ALLOW_HTTP === '1'
const COOKIE = 'rp_node_session'
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout'

// Discovery once, lazily (the gateway may start after us); retried on failure.
let configPromise
function config() {
  configPromise ??= oidc
    .discovery(new URL(ISSUER), CLIENT_ID, undefined, oidc.ClientSecretBasic(CLIENT_SECRET), {
      execute: ALLOW_HTTP ? [oidc.allowInsecureRequests] : [],
    })
    .catch((e) => {
      configPromise = undefined
      throw e
    })
  return configPromise
}

// Server-side sessions: cookie value -> session; pending logins: state -> checks. A real
// deployment keeps these in its own store (Redis, database), not in process memory.
const sessions = new Map()
const pending = new Map()

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])
const pre = (id, value) => `<pre id="${id}">${escape(JSON.stringify(value, null, 2))}</pre>`
const fingerprint = (token) => createHash('sha256').update(token).digest('hex').slice(0, 16)
const random = () => randomBytes(32).toString('base64url')

function page(res, status, title, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store', ...headers })
  res.end(`<!doctype html><html lang="vi"><meta charset="utf-8"><title>${escape(title)}</title><body><h1>${escape(title)}</h1>${body}</body></html>`)
}

function redirect(res, location, headers = {}) {
  res.writeHead(302, { Location: location, 'Cache-Control': 'no-store', ...headers })
  res.end()
}

function json(res, status, value) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' })
  res.end(JSON.stringify(value))
}

function cookieValue(req) {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=')
    if (k === COOKIE) return v.join('=')
  }
  return undefined
}

function setCookie(value, maxAge) {
  const secure = BASE_URL.startsWith('https://') ? '; Secure' : ''
  return `${COOKIE}=${value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${maxAge}${secure}`
}

async function readForm(req) {
  let body = ''
  for await (const chunk of req) {
    body += chunk
    if (body.length > 64 * 1024) throw new Error('body too large')
  }
  return new URLSearchParams(body)
}

// Our own protected API: accepts a gateway access token meant for us, checked by introspection
// (revocation and logout are seen at once, unlike a local signature check).
async function api(req, res) {
  const auth = req.headers.authorization ?? ''
  if (!auth.startsWith('Bearer ')) {
    res.writeHead(401, { 'WWW-Authenticate': 'Bearer' })
    return res.end()
  }
  const introspection = await oidc.tokenIntrospection(await config(), auth.slice(7))
  if (!introspection.active) {
    res.writeHead(401, { 'WWW-Authenticate': 'Bearer error="invalid_token"' })
    return res.end()
  }
  json(res, 200, {
    active: true,
    sub: introspection.sub,
    client_id: introspection.client_id,
    scope: introspection.scope,
    documents: [{ so_ky_hieu: '12/QĐ-UBND', trich_yeu: 'Quyết định thí điểm đăng nhập một lần' }],
  })
}

async function home(req, res, session) {
  if (!session) {
    return page(res, 200, 'Hệ thống quản lý văn bản', '<p id="status">anonymous</p><p><a id="login" href="/login">Đăng nhập / Log in</a></p>')
  }
  const cfg = await config()
  const claims = session.claims
  // Two API calls with the access token: the gateway's /userinfo and our own API.
  const userinfo = await oidc.fetchUserInfo(cfg, session.tokens.access_token, claims.sub)
  const apiRes = await oidc.fetchProtectedResource(cfg, session.tokens.access_token, new URL(`${BASE_URL}/api/documents`), 'GET')
  const apiBody = apiRes.status === 200 ? await apiRes.json() : { status: apiRes.status }
  page(
    res,
    200,
    'Hệ thống quản lý văn bản',
    '<p id="status">logged-in</p>' +
      pre('id-token-claims', claims) +
      pre('userinfo', userinfo) +
      pre('api', apiBody) +
      `<p>access token <code id="access-token">${fingerprint(session.tokens.access_token)}</code>, ` +
      `refreshed <span id="refreshed">${session.refreshed}</span> time(s)</p>` +
      '<form method="post" action="/refresh"><button>Làm mới / Refresh</button></form>' +
      '<form method="post" action="/logout"><button>Đăng xuất / Log out</button></form>',
  )
}

async function login(req, res) {
  const cfg = await config()
  const state = oidc.randomState()
  const nonce = oidc.randomNonce()
  const verifier = oidc.randomPKCECodeVerifier()
  pending.set(state, { nonce, verifier, at: Date.now() })
  // Pending logins expire (10 minutes), so abandoned ones cannot pile up.
  for (const [k, v] of pending) if (Date.now() - v.at > 600_000) pending.delete(k)
  const url = oidc.buildAuthorizationUrl(cfg, {
    redirect_uri: `${BASE_URL}/auth/callback`,
    scope: SCOPE,
    state,
    nonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    ui_locales: 'vi',
  })
  redirect(res, url.href)
}

async function callback(req, res, url) {
  const checks = pending.get(url.searchParams.get('state') ?? '')
  if (!checks) return page(res, 400, 'Lỗi đăng nhập / Login error', '<p id="error">unknown or used state</p>')
  pending.delete(url.searchParams.get('state'))
  let tokens
  try {
    // Checks state, iss (RFC 9207), the code exchange with the PKCE verifier, the ID token
    // (signature, iss, aud, exp, nonce) — against the URL the gateway redirected to.
    tokens = await oidc.authorizationCodeGrant(await config(), new URL(url.pathname + url.search, BASE_URL), {
      pkceCodeVerifier: checks.verifier,
      expectedState: url.searchParams.get('state'),
      expectedNonce: checks.nonce,
      idTokenExpected: true,
    })
  } catch (e) {
    return page(res, 400, 'Lỗi đăng nhập / Login error', `<p id="error">${escape(e.message)}</p>`)
  }
  const id = random()
  sessions.set(id, { tokens, claims: tokens.claims(), refreshed: 0 })
  redirect(res, '/', { 'Set-Cookie': setCookie(id, 8 * 3600) })
}

async function refresh(req, res, id, session) {
  if (!session) return redirect(res, '/')
  try {
    const fresh = await oidc.refreshTokenGrant(await config(), session.tokens.refresh_token)
    // Refresh tokens rotate: keep the new one; keep the first ID token as the logout hint.
    session.tokens = { ...session.tokens, access_token: fresh.access_token, refresh_token: fresh.refresh_token ?? session.tokens.refresh_token }
    session.refreshed += 1
    redirect(res, '/')
  } catch (e) {
    // invalid_grant: the SSO session ended or the account was merged; log in again.
    sessions.delete(id)
    page(res, 401, 'Phiên đã kết thúc / Session ended', `<p id="error">${escape(e.message)}</p>`, { 'Set-Cookie': setCookie('', 0) })
  }
}

async function logout(req, res, id, session) {
  if (!session) return redirect(res, '/')
  sessions.delete(id)
  const state = oidc.randomState()
  pending.set(`logout:${state}`, { at: Date.now() })
  const url = oidc.buildEndSessionUrl(await config(), {
    id_token_hint: session.tokens.id_token,
    post_logout_redirect_uri: `${BASE_URL}/auth/logged-out`,
    state,
  })
  redirect(res, url.href, { 'Set-Cookie': setCookie('', 0) })
}

function loggedOut(req, res, url) {
  const key = `logout:${url.searchParams.get('state') ?? ''}`
  if (!pending.delete(key)) return page(res, 400, 'Đăng xuất / Logout', '<p id="error">unknown state</p>')
  page(res, 200, 'Đã đăng xuất / Logged out', '<p id="status">logged-out</p><p><a href="/">Trang chủ</a></p>')
}

// OpenID Connect Back-Channel Logout 1.0: verify the logout token with the gateway's keys,
// then end every local session of that gateway session (`sid`).
async function backchannelLogout(req, res) {
  const form = await readForm(req)
  try {
    const cfg = await config()
    const meta = cfg.serverMetadata()
    backchannelLogout.jwks ??= createRemoteJWKSet(new URL(meta.jwks_uri))
    const { payload } = await jwtVerify(form.get('logout_token') ?? '', backchannelLogout.jwks, {
      issuer: meta.issuer,
      audience: CLIENT_ID,
      typ: 'logout+jwt',
      requiredClaims: ['iat', 'jti'],
      clockTolerance: 60,
    })
    if (!payload.events?.[BACKCHANNEL_EVENT] || 'nonce' in payload) throw new Error('not a logout token')
    for (const [id, s] of sessions) if (s.claims.sid === payload.sid) sessions.delete(id)
    res.writeHead(200, { 'Cache-Control': 'no-store' })
    res.end()
  } catch (e) {
    json(res, 400, { error: 'invalid_request', error_description: e.message })
  }
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url, BASE_URL)
  const id = cookieValue(req)
  const session = id ? sessions.get(id) : undefined
  try {
    const route = `${req.method} ${url.pathname}`
    if (route === 'GET /') return await home(req, res, session)
    if (route === 'GET /login') return await login(req, res)
    if (route === 'GET /auth/callback') return await callback(req, res, url)
    if (route === 'POST /refresh') return await refresh(req, res, id, session)
    if (route === 'POST /logout') return await logout(req, res, id, session)
    if (route === 'GET /auth/logged-out') return loggedOut(req, res, url)
    if (route === 'POST /auth/backchannel-logout') return await backchannelLogout(req, res)
    if (route === 'GET /api/documents') return await api(req, res)
    page(res, 404, 'Không tìm thấy / Not found', '')
  } catch (e) {
    console.error(e)
    page(res, 502, 'Lỗi / Error', `<p id="error">${escape(e.message)}</p>`)
  }
})

const port = Number(new URL(BASE_URL).port || 8000)
server.listen(port, '127.0.0.1', () => console.log(`listening on ${BASE_URL}`))
