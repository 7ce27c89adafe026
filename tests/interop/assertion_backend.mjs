// A backend that trusts Warden's signed identity assertion and nothing else, verified with jose
// (npm) as any Node service would: createRemoteJWKSet over Warden's published JWKS, ES256 only,
// the explicit `typ`, Warden's issuer, this backend's own origin as audience, and `exp`, `iat`,
// `sub` required. It fetches the set again at once on an unknown kid (jose waits 30 s between
// such fetches by default; the test moves Warden's clock through a rotation, not this
// backend's, and does not wait; Warden publishes a new key 5 minutes before it signs with it).
//
// Answers 200 with the verified claims, or 401 with jose's reason. Prints "ready PORT".
// Usage: node assertion_backend.mjs --issuer WARDEN_PUBLIC_URL [--header x-warden-identity]
// WARDEN_NODE_MODULES must name the node_modules directory holding jose.

import http from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const issuer = arg("issuer");
const header = arg("header", "x-warden-identity").toLowerCase();
const jose = await import(pathToFileURL(join(process.env.WARDEN_NODE_MODULES, "jose/dist/webapi/index.js")).href);
const jwks = jose.createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`), { cooldownDuration: 0 });

const server = http.createServer(async (req, res) => {
  const audience = `http://127.0.0.1:${server.address().port}`;
  let status = 200;
  let body;
  try {
    const token = req.headers[header];
    if (!token) throw new Error("no assertion");
    const { payload, protectedHeader } = await jwt(token, audience);
    body = { verified_by: "jose", kid: protectedHeader.kid, claims: payload };
  } catch (e) {
    status = 401;
    body = { error: `${e.code ?? e.name}: ${e.message}` };
  }
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
});
const jwt = (token, audience) =>
  jose.jwtVerify(token, jwks, { issuer, audience, algorithms: ["ES256"], typ: "warden-identity+jwt", requiredClaims: ["exp", "iat", "sub"] });
server.listen(0, "127.0.0.1", () => console.log(`ready ${server.address().port}`));
