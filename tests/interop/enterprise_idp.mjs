// A company identity provider for the authorization-server interop tests: node-oidc-provider (a
// certified OpenID Provider) configured with the documented quirks of the IdP it stands for, and
// one confidential client registered for Warden, as an admin would.
//
//   entra   issuer http://127.0.0.1:PORT/<tenant>/v2.0; OpenID Connect discovery only (no RFC
//           8414 document); no registration endpoint; any `resource` parameter is refused with
//           invalid_target (AADSTS9010010, as Entra does beside v2 scopes since March 2026); ID
//           tokens carry oid (the stable user id; sub is pairwise per app and differs), tid,
//           roles (app roles), preferred_username and ver 2.0.
//   google  issuer http://127.0.0.1:PORT; discovery only; no registration; opaque access tokens;
//           ID tokens carry sub, email, email_verified, hd (the Workspace domain), name.
//   okta    issuer http://127.0.0.1:PORT/oauth2/default (a custom authorization server); no
//           open registration (Okta registers through its management API); the groups scope puts
//           groups in the ID token; preferred_username is the login (an email).
//
// Sign-in is headless: every interaction is completed at once as --user, or refused with
// access_denied when --deny is given. Prints "ready ISSUER" when listening.
//
// With --id-jag FILE it also issues Identity Assertion JWT Authorization Grants (ID-JAG, Okta's
// Cross App Access): a second client, `agent` (secret `agent-secret`, redirect
// http://127.0.0.1:65530/idp-callback), signs its user in and exchanges the ID token (RFC 8693,
// requested_token_type id-jag) for an ID-JAG for an audience and resource; FILE holds, read at
// each request, the client id the resource's authorization server knows the agent by (as the IdP
// admin configured it). ID-JAGs are RS256 with a key of their own, published at
// ISSUER/id-jag/jwks.
// With --downstream URL, Warden's own client may exchange (RFC 8693) an access token this IdP
// issued it at a person's sign-in for a token for that downstream API (audience URL): an RS256
// JWT with the person's sub, the requested scope, and act naming Warden's client, published at
// ISSUER/exchange/jwks; a subject token that is not an active access token is invalid_grant.
// Warden's client may then also refresh: like Okta, the IdP honours offline_access without
// prompt=consent (node-oidc-provider follows OpenID Connect Core §11 and needs it, so the fixture
// adds it to such authorization requests); --access-ttl N sets its access tokens' lifetime, and
// ISSUER/refreshes answers how many refresh grants succeeded.
// Usage: node enterprise_idp.mjs --preset entra|google|okta --port N --client-id ID
//        --client-secret S --redirect-uri URI --user ID [--roles a,b] [--hd domain] [--deny]
// WARDEN_NODE_MODULES must name the node_modules directory holding oidc-provider.

import http from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const preset = arg("preset", "entra");
const port = Number(arg("port"));
const user = arg("user", "alice");
const roles = arg("roles", "").split(",").filter(Boolean);
const hd = arg("hd", "acme.example");
const deny = process.argv.includes("--deny");
const idJagFile = arg("id-jag");
const downstream = arg("downstream");
const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const prefix = { entra: `/${tenant}/v2.0`, google: "", okta: "/oauth2/default" }[preset];
if (prefix === undefined) throw new Error(`unknown preset ${preset}`);
const issuer = `http://127.0.0.1:${port}${prefix}`;

const { default: Provider, errors } = await import(pathToFileURL(join(process.env.WARDEN_NODE_MODULES, "oidc-provider/lib/index.js")).href);
const jose = await import(pathToFileURL(join(process.env.WARDEN_NODE_MODULES, "jose/dist/webapi/index.js")).href);

// A stable, made-up object id per user (Entra's oid is a GUID).
const oid = (id) => `00000000-0000-4000-8000-${Buffer.from(id).toString("hex").padEnd(12, "0").slice(0, 12)}`;
// The IdP's subject for --user (node-oidc-provider puts the account id in `sub`): Google's is a
// number, Okta's starts with 00u; Entra's `sub` is pairwise per app, so its stable id is `oid`.
const account = { entra: `pairwise-${user}`, google: `1${Buffer.from(user).toString("hex")}`, okta: `00u${user}` }[preset];
const claimsOf = () => {
  const email = `${user}@${hd}`;
  switch (preset) {
    case "entra":
      return { oid: oid(user), tid: tenant, roles, preferred_username: email, name: user, ver: "2.0" };
    case "google":
      return { email, email_verified: true, hd, name: user };
    default:
      return { preferred_username: email, email, name: user, groups: ["Everyone", ...roles] };
  }
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: arg("client-id"),
      client_secret: arg("client-secret"),
      redirect_uris: [arg("redirect-uri")],
      grant_types: ["authorization_code", ...(downstream ? [TOKEN_EXCHANGE, "refresh_token"] : [])],
      response_types: ["code"],
      token_endpoint_auth_method: preset === "google" ? "client_secret_post" : "client_secret_basic",
    },
    ...(idJagFile
      ? [{
          client_id: "agent",
          client_secret: "agent-secret",
          redirect_uris: ["http://127.0.0.1:65530/idp-callback"],
          grant_types: ["authorization_code", "urn:ietf:params:oauth:grant-type:token-exchange"],
          response_types: ["code"],
          token_endpoint_auth_method: "client_secret_basic",
        }]
      : []),
  ],
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: false },
    // Entra: any resource indicator beside v2 scopes is refused; the others ignore none.
    resourceIndicators: {
      enabled: preset === "entra",
      defaultResource: () => undefined,
      getResourceServerInfo: () => {
        throw new errors.InvalidTarget("AADSTS9010010: The resource parameter provided in the request doesn't match with the requested scopes.");
      },
    },
  },
  pkce: { required: () => true },
  ttl: { AccessToken: Number(arg("access-ttl", "3600")) },
  // Claims go into the ID token itself (as these IdPs put them), not only into userinfo.
  conformIdTokenClaims: false,
  claims: {
    openid: ["sub", "oid", "tid", "roles", "ver", "hd"],
    profile: ["name", "preferred_username"],
    email: ["email", "email_verified"],
    groups: ["groups"],
  },
  scopes: ["openid", "profile", "email", "groups", "offline_access"],
  findAccount: (_ctx, id) => ({ accountId: id, claims: () => ({ sub: id, ...claimsOf() }) }),
  interactions: { url: (_ctx, interaction) => `${prefix}/interaction/${interaction.uid}` },
});
provider.proxy = false;

// ID-JAG issuance (RFC 8693 token exchange of an ID token this IdP issued).
const idJagKey = await jose.generateKeyPair("RS256", { extractable: true });
const idJagJwk = { ...(await jose.exportJWK(idJagKey.publicKey)), kid: "id-jag-1", alg: "RS256", use: "sig" };
// Downstream tokens (RFC 8693 token exchange of an access token this IdP issued).
const exchangeKey = await jose.generateKeyPair("RS256", { extractable: true });
const exchangeJwk = { ...(await jose.exportJWK(exchangeKey.publicKey)), kid: "exchange-1", alg: "RS256", use: "sig" };
const exchangeAccessToken = async (ctx) => {
  const p = ctx.oidc.params;
  if (p.subject_token_type !== "urn:ietf:params:oauth:token-type:access_token") {
    throw new errors.InvalidRequest("only access tokens are exchanged for downstream tokens");
  }
  const subject = await provider.AccessToken.find(p.subject_token);
  if (!subject || subject.isExpired) throw new errors.InvalidGrant("the subject token is not an active access token of this IdP");
  if (p.audience !== downstream) throw new errors.InvalidTarget("unknown audience");
  const now = Math.floor(Date.now() / 1000);
  const clientId = ctx.oidc.client.clientId;
  const token = await new jose.SignJWT({ scope: p.scope, client_id: clientId, act: { sub: clientId } })
    .setProtectedHeader({ alg: "RS256", kid: exchangeJwk.kid, typ: "at+jwt" })
    .setIssuer(issuer)
    .setSubject(subject.accountId)
    .setAudience(downstream)
    .setJti(crypto.randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(exchangeKey.privateKey);
  ctx.body = { access_token: token, issued_token_type: "urn:ietf:params:oauth:token-type:access_token", token_type: "Bearer", expires_in: 300, scope: p.scope };
};
if (idJagFile || downstream) {
  const { readFileSync } = await import("node:fs");
  const params = ["subject_token", "subject_token_type", "requested_token_type", "audience", "resource", "scope"];
  provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
    const p = ctx.oidc.params;
    if (downstream && p.requested_token_type !== "urn:ietf:params:oauth:token-type:id-jag") return exchangeAccessToken(ctx);
    if (!idJagFile || p.requested_token_type !== "urn:ietf:params:oauth:token-type:id-jag" || p.subject_token_type !== "urn:ietf:params:oauth:token-type:id_token") {
      throw new errors.InvalidRequest("only ID tokens are exchanged, for ID-JAGs");
    }
    let payload;
    try {
      ({ payload } = await provider.IdToken.validate(p.subject_token, ctx.oidc.client));
    } catch {
      throw new errors.InvalidGrant("the subject token is not an ID token of this IdP");
    }
    const now = Math.floor(Date.now() / 1000);
    if (payload.exp < now) throw new errors.InvalidGrant("the ID token expired");
    const jag = await new jose.SignJWT({
      client_id: readFileSync(idJagFile, "utf8").trim(),
      resource: p.resource,
      scope: p.scope,
      email: `${user}@${hd}`,
      groups: ["Everyone", ...roles],
    })
      .setProtectedHeader({ alg: "RS256", kid: idJagJwk.kid, typ: "oauth-id-jag+jwt" })
      .setIssuer(issuer)
      .setSubject(payload.sub)
      .setAudience(p.audience)
      .setJti(crypto.randomUUID())
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(idJagKey.privateKey);
    ctx.body = { access_token: jag, issued_token_type: "urn:ietf:params:oauth:token-type:id-jag", token_type: "N_A", expires_in: 300, scope: p.scope };
  }, params);
}

let refreshes = 0;
provider.on("grant.success", (ctx) => {
  if (ctx.oidc.params.grant_type === "refresh_token") refreshes += 1;
});

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  if (!req.url.startsWith(prefix)) {
    res.statusCode = 404;
    return res.end();
  }
  let original = req.url;
  let path = req.url.slice(prefix.length) || "/";
  if (path === "/id-jag/jwks" || path === "/exchange/jwks") {
    res.setHeader("content-type", "application/json");
    return res.end(JSON.stringify({ keys: [path === "/id-jag/jwks" ? idJagJwk : exchangeJwk] }));
  }
  if (path === "/refreshes") {
    res.setHeader("content-type", "application/json");
    return res.end(JSON.stringify({ refreshes }));
  }
  if (downstream && path.startsWith("/auth?")) {
    const url = new URL(path, issuer);
    if (url.searchParams.get("scope")?.split(" ").includes("offline_access") && !url.searchParams.has("prompt")) {
      url.searchParams.set("prompt", "consent");
      path = `${url.pathname}${url.search}`;
      original = `${prefix}${path}`;
    }
  }
  const interaction = path.match(/^\/interaction\/([^/?]+)/);
  if (!interaction) {
    req.originalUrl = original;
    req.url = path;
    return callback(req, res);
  }
  try {
    const details = await provider.interactionDetails(req, res);
    let result;
    if (deny) {
      result = { error: "access_denied", error_description: "the user declined" };
    } else if (details.prompt.name === "login") {
      result = { login: { accountId: account } };
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      const missing = details.prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      result = { consent: { grantId: await grant.save() } };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;
server.listen(port, "127.0.0.1", () => console.log(`ready ${issuer}`));
