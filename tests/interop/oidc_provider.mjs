// A real third-party authorization server for the interop tests: node-oidc-provider (a certified
// OpenID Provider), configured to issue RS256 JWT access tokens for Warden's resource through
// resource indicators (RFC 8707), with dynamic client registration and PKCE.
// Sign-in is headless: every interaction is completed at once as --user, with a grant for the
// requested resource's scopes. Never a production setup.
// Usage: node oidc_provider.mjs --port N --resource URL --scopes "a b" --user ID --roles "r1,r2"
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

const { default: Provider } = await import(pathToFileURL(join(process.env.WARDEN_NODE_MODULES, "oidc-provider/lib/index.js")).href);

const provider = new Provider(issuer, {
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

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const match = req.url.match(/^\/interaction\/([^/?]+)/);
  if (!match) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (process.env.OIDC_DEBUG) console.log(JSON.stringify({ prompt: details.prompt, session: details.session, grantId: details.grantId }));
    let result;
    if (details.prompt.name === "login") {
      result = { login: { accountId: user } };
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
