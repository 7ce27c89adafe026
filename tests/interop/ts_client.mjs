// Drive Warden with the official TypeScript MCP SDK client and its OAuth support, headless.
//
// Signs in (401 -> metadata -> registration -> authorize -> token), lists tools, and calls
// --tool. When that call needs more scope, Warden answers 403 insufficient_scope; the SDK
// re-authorizes for the scope the challenge names, and this script completes that sign-in and
// retries once. Prints one JSON report: SDK version, tools, whether a step-up happened, the
// result, and every HTTP exchange (method, URL, status).
// Usage: node ts_client.mjs --url URL --tool NAME [--args JSON] [--package sdk|client]
//        [--keep-refresh-tokens yes|no]
// WARDEN_NODE_MODULES must name the node_modules directory holding the package:
// `sdk` is @modelcontextprotocol/sdk (1.x), `client` is @modelcontextprotocol/client (2.x).

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

import { browse } from "./browser.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const modules = process.env.WARDEN_NODE_MODULES;
const packageName = arg("package", "sdk") === "client" ? "@modelcontextprotocol/client" : "@modelcontextprotocol/sdk";
const root = join(modules, packageName);
const load = (p) => import(pathToFileURL(join(root, p)).href);
let Client, StreamableHTTPClientTransport, UnauthorizedError;
if (packageName === "@modelcontextprotocol/sdk") {
  ({ Client } = await load("dist/esm/client/index.js"));
  ({ StreamableHTTPClientTransport } = await load("dist/esm/client/streamableHttp.js"));
  ({ UnauthorizedError } = await load("dist/esm/client/auth.js"));
} else {
  ({ Client, StreamableHTTPClientTransport, UnauthorizedError } = await load("dist/index.mjs"));
}
const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
// typescript-sdk#2255: 1.x refreshes instead of re-authorizing on a 403 step-up when it holds a
// refresh token, and a refresh cannot widen scope. A client that keeps no refresh token avoids it.
const keepRefreshTokens = arg("keep-refresh-tokens", "yes") === "yes";
const url = new URL(arg("url"));
const tool = arg("tool");
const toolArgs = JSON.parse(arg("args", "{}"));

const exchanges = [];
const loggingFetch = async (input, init) => {
  const response = await fetch(input, init);
  const target = typeof input === "string" ? input : input.url ?? String(input);
  exchanges.push({ method: init?.method ?? "GET", url: target, status: response.status });
  return response;
};

/** The SDK's OAuthClientProvider, with the browser replaced by one redirect-following fetch. */
class HeadlessProvider {
  constructor() {
    this.info = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.pendingParams = undefined;
    this.discovery = undefined;
  }
  get redirectUrl() {
    return "http://127.0.0.1:65532/callback";
  }
  get clientMetadata() {
    return {
      client_name: "warden-interop-ts",
      redirect_uris: ["http://127.0.0.1:65532/callback"],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info) {
    this.info = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = keepRefreshTokens ? tokens : { ...tokens, refresh_token: undefined };
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
  /** Stands in for the user's browser (browser.mjs): through the authorization server's and
   * the IdP's pages, Warden's consent allowed, until it is sent to the redirect URI. */
  async redirectToAuthorization(authorizationUrl) {
    const end = await browse(authorizationUrl.toString(), { until: this.redirectUrl, fetch: loggingFetch });
    const back = new URL(end);
    if (back.searchParams.get("error")) throw new Error(`authorization error: ${back.searchParams.get("error")}`);
    this.pendingParams = back.searchParams;
  }
  saveDiscoveryState(state) {
    this.discovery = state;
  }
  discoveryState() {
    return this.discovery;
  }
  /** What finishAuth takes: 1.x the code, 2.x the whole callback query (it checks `iss`). */
  takeCallback() {
    const params = this.pendingParams;
    this.pendingParams = undefined;
    if (!params?.get("code")) throw new Error("no authorization code to finish with");
    return packageName === "@modelcontextprotocol/sdk" ? params.get("code") : params;
  }
}

const provider = new HeadlessProvider();
const newTransport = () => new StreamableHTTPClientTransport(url, { authProvider: provider, fetch: loggingFetch });
let transport = newTransport();
let client = new Client({ name: "warden-interop-ts", version: "1.0.0" });
try {
  await client.connect(transport);
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
  await transport.finishAuth(provider.takeCallback());
  transport = newTransport();
  client = new Client({ name: "warden-interop-ts", version: "1.0.0" });
  await client.connect(transport);
}
const tools = (await client.listTools()).tools.map((t) => t.name);

let steppedUp = false;
let result;
try {
  result = await client.callTool({ name: tool, arguments: toolArgs });
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
  // The 403 step-up: the SDK started a new authorization for the challenge's scope.
  steppedUp = true;
  await transport.finishAuth(provider.takeCallback());
  result = await client.callTool({ name: tool, arguments: toolArgs });
}
await client.close();
console.log(JSON.stringify({ package: packageName, sdk_version: version, tools, stepped_up: steppedUp, granted_scope: provider.saved?.scope, result, exchanges }));
