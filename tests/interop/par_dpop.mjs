// An independent relying party (oauth4webapi, not the gateway's code) doing what issue 14 asks
// of the gateway: a pushed authorization request with a DPoP proof, the code exchange, a
// DPoP-protected /userinfo call and a refresh, each bound to one key generated here.
//
// Usage: node par_dpop.mjs ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI
// Prints {"authorize": URL}, reads the callback URL on stdin, prints the results as JSON.
import * as oauth from 'oauth4webapi';
import { createInterface } from 'node:readline';

const [issuerUrl, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const insecure = { [oauth.allowInsecureRequests]: true }; // the test gateway is on http://127.0.0.1
const issuer = new URL(issuerUrl);

// A proof refused for want of the server nonce is retried once: the library remembers it.
async function withNonce(fn) {
  try {
    return await fn();
  } catch (e) {
    if (oauth.isDPoPNonceError(e)) return await fn();
    throw e;
  }
}

try {
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { ...insecure, algorithm: 'oidc' }),
  );
  const client = { client_id: clientId };
  const auth = oauth.ClientSecretBasic(clientSecret);
  const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  const params = new URLSearchParams({
    redirect_uri: redirectUri,
    response_type: 'code',
    scope: 'openid profile',
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  const pushed = await withNonce(async () =>
    oauth.processPushedAuthorizationResponse(
      as,
      client,
      await oauth.pushedAuthorizationRequest(as, client, auth, params, { DPoP, ...insecure }),
    ),
  );
  const authorize = new URL(as.authorization_endpoint);
  authorize.searchParams.set('client_id', clientId);
  authorize.searchParams.set('request_uri', pushed.request_uri);
  console.log(JSON.stringify({ authorize: authorize.href, expires_in: pushed.expires_in }));

  const lines = createInterface({ input: process.stdin });
  const callback = await new Promise((resolve) => lines.once('line', resolve));
  lines.close();
  const answer = oauth.validateAuthResponse(as, client, new URL(callback), state);
  const tokens = await withNonce(async () =>
    oauth.processAuthorizationCodeResponse(
      as,
      client,
      await oauth.authorizationCodeGrantRequest(as, client, auth, answer, redirectUri, verifier, {
        DPoP,
        ...insecure,
      }),
      { expectedNonce: nonce, requireIdToken: true },
    ),
  );
  const claims = oauth.getValidatedIdTokenClaims(tokens);
  const info = await withNonce(async () =>
    oauth.processUserInfoResponse(
      as,
      client,
      claims.sub,
      await oauth.userInfoRequest(as, client, tokens.access_token, { DPoP, ...insecure }),
    ),
  );
  const refreshed = await withNonce(async () =>
    oauth.processRefreshTokenResponse(
      as,
      client,
      await oauth.refreshTokenGrantRequest(as, client, auth, tokens.refresh_token, { DPoP, ...insecure }),
    ),
  );
  console.log(
    JSON.stringify({
      sub: claims.sub,
      token_type: tokens.token_type,
      access_token: tokens.access_token,
      userinfo_sub: info.sub,
      refreshed_token_type: refreshed.token_type,
      refreshed_access_token: refreshed.access_token,
    }),
  );
} catch (e) {
  console.error(`oauth4webapi RP failed: ${e?.name}: ${e?.message} ${JSON.stringify(e?.cause ?? '')}`);
  process.exit(1);
}
