// A real third-party authorization server for the interop tests: node-oidc-provider (a certified
// OpenID Provider), configured to issue RS256 JWT access tokens for Warden's resource through
// resource indicators (RFC 8707), with dynamic client registration and PKCE.
// Sign-in is headless: every interaction is completed at once as --user (or the request's
// login_hint), with a grant for the requested resource's scopes. Never a production setup.
//
// With --downstream URL it also exchanges the access tokens it issued for Warden's resource for
// tokens for that downstream API, as a company IdP does for a gateway:
//   RFC 8693 token exchange (Okta, Keycloak, Auth0): client `warden-exchange` (secret
//     `exchange-secret`, client_secret_basic); subject_token_type access_token; `audience` must
//     be the downstream; scopes among --exchange-scopes (else invalid_scope); the token carries
//     `act: {sub: warden-exchange}` (over the subject token's own `act`) and the subject's sub.
//   Entra ID on-behalf-of: client `warden-obo` (secret `obo-secret`, client_secret_post);
//     grant jwt-bearer with requested_token_use=on_behalf_of; scopes must be DOWNSTREAM/NAME;
//     names in --mfa need MFA (interaction_required, AADSTS50076), names not in --consented
//     were never consented (invalid_grant, suberror consent_required, AADSTS65001), both with
//     Entra's error body (error_codes, suberror); tokens carry scp and azp, no act.
//   Exchanged tokens live --exchange-ttl seconds (default 300) and are RS256 with the IdP's key.
//   GET /exchanges answers how many tokens were exchanged so far.
// Usage: node oidc_provider.mjs --port N --resource URL --scopes "a b" --user ID --roles "r1,r2"
//        [--downstream URL --exchange-scopes "a b" --consented "A B" --mfa "C" --exchange-ttl N]
// WARDEN_NODE_MODULES must name the node_modules directory holding oidc-provider.

import http from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const port = Number(arg("port"));
const resource = arg("resource");
const scopes = arg("scopes", "");
const user = arg("user", "alice");
const roles = arg("roles", "").split(",").filter(Boolean);
const issuer = `http://127.0.0.1:${port}`;
const downstream = arg("downstream");
const list = (name) => arg(name, "").split(" ").filter(Boolean);
const exchangeScopes = list("exchange-scopes");
const consented = list("consented");
const mfa = list("mfa");
const exchangeTtl = Number(arg("exchange-ttl", "300"));

const { default: Provider, errors } = await import(pathToFileURL(join(process.env.WARDEN_NODE_MODULES, "oidc-provider/lib/index.js")).href);
const jose = await import(pathToFileURL(join(process.env.WARDEN_NODE_MODULES, "jose/dist/webapi/index.js")).href);

// The IdP's signing key: it signs the access tokens it issues and the ones it exchanges.
const signing = await jose.generateKeyPair("RS256", { extractable: true });
const privateJwk = { ...(await jose.exportJWK(signing.privateKey)), kid: "idp-1", alg: "RS256", use: "sig" };
const publicJwks = jose.createLocalJWKSet({ keys: [{ ...(await jose.exportJWK(signing.publicKey)), kid: "idp-1", alg: "RS256", use: "sig" }] });
const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token";
let exchanged = 0;

const provider = new Provider(issuer, {
  jwks: { keys: [privateJwk] },
  clients: downstream
    ? [
        { client_id: "warden-exchange", client_secret: "exchange-secret", grant_types: [TOKEN_EXCHANGE], response_types: [], redirect_uris: [], token_endpoint_auth_method: "client_secret_basic" },
        { client_id: "warden-obo", client_secret: "obo-secret", grant_types: [JWT_BEARER], response_types: [], redirect_uris: [], token_endpoint_auth_method: "client_secret_post" },
      ]
    : [],
  clientBasedCORS: () => true,
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) throw new Error(`unknown resource ${indicator}`);
        return { scope: scopes, audience: resource, accessTokenTTL: 600, accessTokenFormat: "jwt", jwt: { sign: { alg: "RS256" } } };
      },
    },
  },
  pkce: { required: () => true },
  scopes: ["openid", "offline_access", ...scopes.split(" ").filter(Boolean)],
  findAccount: (_ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  extraTokenClaims: () => ({ roles }),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
});
provider.proxy = false;

// A subject token: an access token this IdP issued for Warden's resource, still valid.
const subjectOf = async (token) => {
  const { payload } = await jose.jwtVerify(token, publicJwks, { issuer, audience: resource, algorithms: ["RS256"] });
  return payload;
};
const issue = async (claims, clientId) => {
  const now = Math.floor(Date.now() / 1000);
  exchanged += 1;
  return new jose.SignJWT({ ...claims, client_id: clientId, jti: crypto.randomUUID() })
    .setProtectedHeader({ alg: "RS256", kid: "idp-1", typ: "at+jwt" })
    .setIssuer(issuer)
    .setAudience(downstream)
    .setIssuedAt(now)
    .setExpirationTime(now + exchangeTtl)
    .sign(signing.privateKey);
};
if (downstream) {
  provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
    const p = ctx.oidc.params;
    if (p.subject_token_type !== ACCESS_TOKEN || (p.requested_token_type && p.requested_token_type !== ACCESS_TOKEN)) {
      throw new errors.InvalidRequest("only access tokens are exchanged, for access tokens");
    }
    let subject;
    try {
      subject = await subjectOf(p.subject_token);
    } catch (e) {
      throw new errors.InvalidGrant(`the subject token is not a valid access token of this IdP (${e.code})`);
    }
    if (p.audience !== downstream) throw new errors.InvalidTarget("unknown audience");
    const asked = (p.scope ?? "").split(" ").filter(Boolean);
    const refused = asked.filter((s) => !exchangeScopes.includes(s));
    if (refused.length) throw new errors.InvalidScope("the requested scope may not be delegated", refused.join(" "));
    const clientId = ctx.oidc.client.clientId;
    const act = subject.act ? { sub: clientId, act: subject.act } : { sub: clientId };
    const token = await issue({ sub: subject.sub, scope: asked.join(" "), act }, clientId);
    ctx.body = { access_token: token, issued_token_type: ACCESS_TOKEN, token_type: "Bearer", expires_in: exchangeTtl, scope: asked.join(" ") };
  }, ["subject_token", "subject_token_type", "requested_token_type", "audience", "scope", "actor_token", "actor_token_type"]);

  // Entra's error body: error, error_description beginning with the AADSTS code, error_codes,
  // timestamp, trace and correlation ids, and for consent a suberror.
  const entraError = (ctx, error, code, description, extra = {}) => {
    ctx.status = 400;
    ctx.body = {
      error,
      error_description: `AADSTS${code}: ${description} Trace ID: ${crypto.randomUUID()} Correlation ID: ${crypto.randomUUID()} Timestamp: ${new Date().toISOString()}`,
      error_codes: [code],
      timestamp: new Date().toISOString(),
      trace_id: crypto.randomUUID(),
      correlation_id: crypto.randomUUID(),
      ...extra,
    };
  };
  provider.registerGrantType(JWT_BEARER, async (ctx) => {
    const p = ctx.oidc.params;
    if (p.requested_token_use !== "on_behalf_of") {
      return entraError(ctx, "invalid_request", 900144, "The request body must contain the following parameter: 'requested_token_use'.");
    }
    let subject;
    try {
      subject = await subjectOf(p.assertion);
    } catch {
      return entraError(ctx, "invalid_grant", 50013, "Assertion failed signature validation.");
    }
    const asked = (p.scope ?? "").split(" ").filter(Boolean);
    const names = asked.filter((s) => s !== "offline_access").map((s) => (s.startsWith(`${downstream}/`) ? s.slice(downstream.length + 1) : null));
    if (names.length === 0 || names.includes(null)) {
      return entraError(ctx, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid.");
    }
    if (names.some((n) => mfa.includes(n))) {
      return entraError(ctx, "interaction_required", 50076, `Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '${downstream}'.`, {
        suberror: "basic_action",
        claims: JSON.stringify({ access_token: { capolids: { essential: true, values: ["mfa-policy"] } } }),
      });
    }
    if (names.some((n) => !consented.includes(n))) {
      return entraError(ctx, "invalid_grant", 65001, `The user or administrator has not consented to use the application with ID '${ctx.oidc.client.clientId}' named 'Warden'. Send an interactive authorization request for this user and resource.`, {
        suberror: "consent_required",
      });
    }
    const token = await issue({ sub: subject.sub, scp: names.join(" "), azp: ctx.oidc.client.clientId, ver: "2.0" }, ctx.oidc.client.clientId);
    ctx.body = { token_type: "Bearer", scope: asked.join(" "), expires_in: exchangeTtl, ext_expires_in: exchangeTtl, access_token: token };
  }, ["assertion", "requested_token_use", "scope"]);
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  if (req.url === "/exchanges") {
    res.setHeader("content-type", "application/json");
    return res.end(JSON.stringify({ exchanged }));
  }
  const match = req.url.match(/^\/interaction\/([^/?]+)/);
  if (!match) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (process.env.OIDC_DEBUG) console.log(JSON.stringify({ prompt: details.prompt, session: details.session, grantId: details.grantId }));
    let result;
    if (details.prompt.name === "login") {
      result = { login: { accountId: details.params.login_hint ?? user } };
    } else {
      // Consent to exactly what the prompt reports missing.
      const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      const missing = details.prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [r, s] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(r, s.join(" "));
      result = { consent: { grantId: await grant.save() } };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});
// Node closes an idle kept-alive connection after 5 s by default; a client that reuses it at
// that moment (the SDK's pool, on a machine busy enough to pause 5 s between the flow's steps)
// gets "Server disconnected without sending a response". Identity providers keep connections
// longer; so does this one.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;
server.listen(port, "127.0.0.1", () => console.log(`ready ${issuer}`));
