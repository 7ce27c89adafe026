// Enterprise-managed authorization (SEP-990, ID-JAG) with the official TypeScript client 2.x's
// CrossAppAccessProvider, headless: the agent signs its user in at the company IdP (authorization
// code with PKCE, the IdP's sign-in completed by a cookie-carrying fetch loop) for an ID token,
// then the SDK asks the assertion callback for an ID-JAG (RFC 8693 token exchange at the IdP, the
// SDK's requestJwtAuthorizationGrant) and redeems it at Warden's token endpoint (jwt-bearer,
// client_secret_basic). No consent page, no browser for Warden. Prints one JSON report.
// Usage: node ts_cross_app.mjs --url MCP_URL --idp ISSUER --client-id ID --client-secret SECRET
//        --tool NAME
// WARDEN_NODE_MODULES must name the node_modules directory holding @modelcontextprotocol/client.

import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const modules = process.env.WARDEN_NODE_MODULES;
const { Client, StreamableHTTPClientTransport, CrossAppAccessProvider, requestJwtAuthorizationGrant } = await import(
  pathToFileURL(join(modules, "@modelcontextprotocol/client/dist/index.mjs")).href
);
const url = new URL(arg("url"));
const idp = arg("idp");
const exchanges = [];
const loggingFetch = async (input, init) => {
  const response = await fetch(input, init);
  const target = typeof input === "string" ? input : input.url ?? String(input);
  exchanges.push({ method: init?.method ?? "GET", url: target, status: response.status });
  return response;
};

/** Signs the user in at the IdP as the `agent` client and returns the ID token. */
async function idToken() {
  const meta = await (await fetch(`${idp}/.well-known/openid-configuration`)).json();
  const redirect = "http://127.0.0.1:65530/idp-callback";
  const verifier = randomBytes(32).toString("base64url");
  const authorize = new URL(meta.authorization_endpoint);
  authorize.search = new URLSearchParams({
    response_type: "code",
    client_id: "agent",
    redirect_uri: redirect,
    scope: "openid email",
    state: randomBytes(8).toString("hex"),
    nonce: randomBytes(8).toString("hex"),
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
  }).toString();
  const cookies = new Map();
  let next = authorize.toString();
  for (let i = 0; i < 10 && !next.startsWith(redirect); i++) {
    const response = await fetch(next, { redirect: "manual", headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join("; ") } });
    for (const c of response.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const at = pair.indexOf("=");
      cookies.set(pair.slice(0, at), pair.slice(at + 1));
    }
    next = new URL(response.headers.get("location"), next).toString();
  }
  const code = new URL(next).searchParams.get("code");
  if (!code) throw new Error(`no code from the IdP: ${next}`);
  const token = await fetch(meta.token_endpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${Buffer.from("agent:agent-secret").toString("base64")}` },
    body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: redirect, code_verifier: verifier }),
  });
  const body = await token.json();
  if (!body.id_token) throw new Error(`no ID token: ${JSON.stringify(body)}`);
  return { idToken: body.id_token, tokenEndpoint: meta.token_endpoint };
}

const signedIn = await idToken();
const provider = new CrossAppAccessProvider({
  assertion: async (ctx) => {
    const grant = await requestJwtAuthorizationGrant({
      tokenEndpoint: signedIn.tokenEndpoint,
      audience: ctx.authorizationServerUrl,
      resource: ctx.resourceUrl,
      idToken: signedIn.idToken,
      clientId: "agent",
      clientSecret: "agent-secret",
      scope: ctx.scope,
      fetchFn: ctx.fetchFn,
    });
    return grant.jwtAuthGrant;
  },
  clientId: arg("client-id"),
  clientSecret: arg("client-secret"),
  expectedIssuer: `${url.protocol}//${url.host}`,
  fetchFn: loggingFetch,
});
const transport = new StreamableHTTPClientTransport(url, { authProvider: provider, fetch: loggingFetch });
const client = new Client({ name: "warden-interop-cross-app", version: "1.0.0" });
await client.connect(transport);
const tools = (await client.listTools()).tools.map((t) => t.name);
const result = await client.callTool({ name: arg("tool"), arguments: {} });
await client.close();
console.log(JSON.stringify({ tools, result, exchanges }));
