"""A backend that trusts Warden's signed identity assertion and nothing else, verified with
PyJWT as any Python service would: the key by `kid` from Warden's published JWKS (PyJWKClient,
which fetches the set again when it meets an unknown kid), ES256 only, the explicit `typ`,
Warden's issuer, this backend's own origin as audience, and `exp`, `iat`, `sub` required.
PyJWKClient caches the set for 5 minutes and refetches for an unknown kid at most every 30 s;
the test moves Warden's clock through a rotation, not this backend's, so the refetch is
allowed at once here (Warden publishes a new key 5 minutes before it signs with it).

Answers 200 with the verified claims, or 401 with PyJWT's reason. Prints "ready PORT".
Usage: python assertion_backend.py --issuer WARDEN_PUBLIC_URL [--header X-Warden-Identity]
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

parser = argparse.ArgumentParser()
parser.add_argument("--issuer", required=True)
parser.add_argument("--header", default="X-Warden-Identity")
args = parser.parse_args()
try:
    jwks = jwt.PyJWKClient(f"{args.issuer}/.well-known/jwks.json", cooldown_duration=0)
except TypeError:  # PyJWT before 2.11 has no cooldown
    jwks = jwt.PyJWKClient(f"{args.issuer}/.well-known/jwks.json")


class Handler(BaseHTTPRequestHandler):
    def answer(self):
        audience = f"http://127.0.0.1:{self.server.server_address[1]}"
        token = self.headers.get(args.header)
        try:
            if not token:
                raise jwt.InvalidTokenError("no assertion")
            if jwt.get_unverified_header(token).get("typ") != "warden-identity+jwt":
                raise jwt.InvalidTokenError("not a Warden identity assertion")
            key = jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["ES256"],
                audience=audience,
                issuer=args.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
            status, body = 200, {"verified_by": f"PyJWT {jwt.__version__}", "kid": key.key_id, "claims": claims}
        except jwt.PyJWTError as e:
            status, body = 401, {"error": f"{type(e).__name__}: {e}"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = answer
    do_POST = answer

    def log_message(self, *_):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"ready {server.server_address[1]}", flush=True)
server.serve_forever()
