"""Cổng dịch vụ công (public-service portal): a minimal relying party of sso-gateway in Python.

Authlib's Flask client does the OpenID Connect work: authorization code + PKCE (S256) + nonce,
ID token validation against the gateway's JWKS, the token refresh and RP-initiated logout. The
app adds what every city system must add itself: the RFC 9207 `iss` check on the callback, a
server-side session store (tokens never go into a cookie) and a back-channel logout receiver.

Its routes are the ones registered in docs/integrate/public-service-portal.md:
  /auth/callback             redirect_uris
  /auth/logged-out           post_logout_redirect_uris
  /auth/backchannel-logout   backchannel_logout_uri

Configuration (environment):
  SSO_ISSUER         the gateway's issuer URL (discovery is read from it)
  SSO_CLIENT_ID      default "cong-dich-vu-cong"
  SSO_CLIENT_SECRET  the client secret registered at the gateway
  APP_BASE_URL       this app's public base URL, e.g. https://dichvucong.tphcm.gov.vn; the app
                     listens on 127.0.0.1 and the port of this URL
  SSO_SCOPE          default "openid profile email phone national_id"
  AUTHLIB_INSECURE_TRANSPORT=1  only for a gateway on plain http (local development, tests)

Run: .venv/bin/python app.py   (it prints "listening on URL" once it accepts connections)
"""

import hashlib
import html
import json
import logging
import os
import secrets
import sys
import threading
from urllib.parse import urlparse

from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, redirect, request, session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from werkzeug.serving import make_server

ISSUER = os.environ["SSO_ISSUER"].rstrip("/")
CLIENT_ID = os.environ.get("SSO_CLIENT_ID", "cong-dich-vu-cong")
CLIENT_SECRET = os.environ["SSO_CLIENT_SECRET"]
BASE_URL = os.environ["APP_BASE_URL"].rstrip("/")
SCOPE = os.environ.get("SSO_SCOPE", "openid profile email phone national_id")

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"

app = Flask(__name__)
app.secret_key = secrets.token_bytes(32)
app.config.update(
    SESSION_COOKIE_NAME="rp_python_session",
    SESSION_COOKIE_HTTPONLY=True,
    SESSION_COOKIE_SAMESITE="Lax",
    SESSION_COOKIE_SECURE=BASE_URL.startswith("https://"),
)

oauth = OAuth(app)
oauth.register(
    "gateway",
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    server_metadata_url=f"{ISSUER}/.well-known/openid-configuration",
    client_kwargs={
        "scope": SCOPE,
        "code_challenge_method": "S256",  # the gateway refuses requests without PKCE
        "token_endpoint_auth_method": "client_secret_basic",
    },
)

# Server-side sessions: local id -> {"tokens", "claims", "refreshed"}; the gateway's `sid` ->
# local ids, so a back-channel logout can end them. A real deployment keeps these in its
# own session store (Redis, database), not in process memory.
SESSIONS = {}
BY_GATEWAY_SID = {}
LOCK = threading.Lock()


def page(title, body, status=200):
    doc = (
        '<!doctype html><html lang="vi"><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return doc, status, {"Content-Type": "text/html; charset=utf-8"}


def pre(element_id, value):
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
    return f'<pre id="{element_id}">{html.escape(text)}</pre>'


def fingerprint(token):
    """A short digest to show which access token is in use, without showing the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def current():
    local = session.get("local")
    with LOCK:
        return local, SESSIONS.get(local) if local else None


@app.get("/")
def home():
    local, state = current()
    if state is None:
        return page(
            "Cổng dịch vụ công",
            '<p id="status">anonymous</p><p><a id="login" href="/login">Đăng nhập / Log in</a></p>',
        )
    tokens = state["tokens"]
    # The API call: /userinfo with the access token as a bearer token.
    res = oauth.gateway.get(
        oauth.gateway.load_server_metadata()["userinfo_endpoint"], token=tokens
    )
    userinfo = res.json() if res.status_code == 200 else {"status": res.status_code}
    body = (
        '<p id="status">logged-in</p>'
        + pre("id-token-claims", state["claims"])
        + pre("userinfo", userinfo)
        + f'<p>access token <code id="access-token">{fingerprint(tokens["access_token"])}</code>'
        + f', refreshed <span id="refreshed">{state["refreshed"]}</span> time(s)</p>'
        + '<form method="post" action="/refresh"><button>Làm mới / Refresh</button></form>'
        + '<form method="post" action="/logout"><button>Đăng xuất / Log out</button></form>'
    )
    return page("Cổng dịch vụ công", body)


@app.get("/login")
def login():
    return oauth.gateway.authorize_redirect(f"{BASE_URL}/auth/callback", ui_locales="vi")


@app.get("/auth/callback")
def callback():
    # RFC 9207: the answer must come from our issuer (the gateway always sends `iss`).
    if request.args.get("iss") != ISSUER:
        return page("Lỗi đăng nhập / Login error", "<p>wrong or missing iss</p>", 400)
    try:
        tokens = oauth.gateway.authorize_access_token(leeway=60)
    except OAuthError as e:
        return page("Lỗi đăng nhập / Login error", f"<p id='error'>{html.escape(str(e))}</p>", 400)
    claims = dict(tokens.pop("userinfo"))
    local = secrets.token_urlsafe(32)
    with LOCK:
        SESSIONS[local] = {"tokens": dict(tokens), "claims": claims, "refreshed": 0}
        BY_GATEWAY_SID.setdefault(claims.get("sid"), set()).add(local)
    session.clear()  # a new session id after login
    session["local"] = local
    return redirect("/")


@app.post("/refresh")
def refresh():
    local, state = current()
    if state is None:
        return redirect("/")
    try:
        new = oauth.gateway.fetch_access_token(
            grant_type="refresh_token", refresh_token=state["tokens"]["refresh_token"]
        )
    except OAuthError as e:
        # invalid_grant: the SSO session ended (logout elsewhere, timeout) or the account was
        # merged. Drop the local session; the next login tells the current `sub`.
        with LOCK:
            SESSIONS.pop(local, None)
        session.clear()
        return page("Phiên đã kết thúc / Session ended", f"<p id='error'>{html.escape(str(e))}</p>", 401)
    with LOCK:
        tokens = state["tokens"]
        tokens["access_token"] = new["access_token"]
        # Refresh tokens rotate: the old one is now spent.
        tokens["refresh_token"] = new.get("refresh_token", tokens["refresh_token"])
        tokens["expires_at"] = new.get("expires_at")
        state["refreshed"] += 1
    return redirect("/")


@app.post("/logout")
def logout():
    local, state = current()
    session.clear()
    if state is None:
        return redirect("/")
    with LOCK:
        SESSIONS.pop(local, None)
    # RP-initiated logout: the gateway ends the SSO session (and the other RPs' sessions
    # through their logout channels), then comes back to the registered URI with our state.
    return oauth.gateway.logout_redirect(
        post_logout_redirect_uri=f"{BASE_URL}/auth/logged-out",
        id_token_hint=state["tokens"]["id_token"],
    )


@app.get("/auth/logged-out")
def logged_out():
    try:
        oauth.gateway.validate_logout_response()
    except OAuthError as e:
        return page("Đăng xuất / Logout", f"<p id='error'>{html.escape(str(e))}</p>", 400)
    return page("Đã đăng xuất / Logged out", '<p id="status">logged-out</p><p><a href="/">Trang chủ</a></p>')


@app.post("/auth/backchannel-logout")
def backchannel_logout():
    """OpenID Connect Back-Channel Logout 1.0: the gateway POSTs a signed logout token."""
    token = request.form.get("logout_token", "")
    metadata = oauth.gateway.load_server_metadata()
    try:
        decoded = jwt.decode(token, KeySet.import_key_set(oauth.gateway.fetch_jwk_set()))
        if decoded.header.get("typ") != "logout+jwt":
            raise ValueError("typ is not logout+jwt")
        registry = jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": metadata["issuer"]},
            aud={"essential": True, "value": CLIENT_ID},
            iat={"essential": True},
        )
        registry.validate(decoded.claims)
        claims = decoded.claims
        if BACKCHANNEL_EVENT not in claims.get("events", {}) or "nonce" in claims:
            raise ValueError("not a logout token")
    except (JoseError, ValueError) as e:
        return json.dumps({"error": "invalid_request", "error_description": str(e)}), 400
    with LOCK:
        for local in BY_GATEWAY_SID.pop(claims.get("sid"), set()):
            SESSIONS.pop(local, None)
    return "", 200, {"Cache-Control": "no-store"}


def main():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log on stderr
    port = urlparse(BASE_URL).port or 8000
    server = make_server("127.0.0.1", port, app, threaded=True)
    print(f"listening on {BASE_URL}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
