// The official TypeScript MCP SDK client (@modelcontextprotocol/sdk 1.x) as a client of
// Warden's federated tools, with a bearer token it is given (the OAuth flow itself is covered by
// ts_client.mjs). Lists the tools, calls one, and with --complete asks for a completion (the
// params of completion/complete); prints a JSON report: {"tools": [...], "result": {...},
// "completion": {...}}.
// Usage: node ts_federation_client.mjs --url URL --token TOKEN --tool NAME [--args JSON] [--complete JSON]
// WARDEN_NODE_MODULES must name the node_modules directory holding the package.

import { join } from "node:path";
import { pathToFileURL } from "node:url";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const root = join(process.env.WARDEN_NODE_MODULES, "@modelcontextprotocol/sdk");
const load = (p) => import(pathToFileURL(join(root, p)).href);
const { Client } = await load("dist/esm/client/index.js");
const { StreamableHTTPClientTransport } = await load("dist/esm/client/streamableHttp.js");

const transport = new StreamableHTTPClientTransport(new URL(arg("url")), {
  requestInit: { headers: { Authorization: `Bearer ${arg("token")}` } },
});
const client = new Client({ name: "warden-federation-interop", version: "1.0.0" });
await client.connect(transport);
const listed = await client.listTools();
const result = await client.callTool({ name: arg("tool"), arguments: JSON.parse(arg("args", "{}")) });
const completeParams = arg("complete");
const completion = completeParams ? (await client.complete(JSON.parse(completeParams))).completion : undefined;
console.log(JSON.stringify({ tools: listed.tools.map((t) => t.name), result, completion }));
await client.close();
