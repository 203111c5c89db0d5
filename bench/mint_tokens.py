"""Mints CDS Hooks JWTs for the secured load benchmark (bench/load-jwt.sh): one token per
line, each with its own `jti` (the server refuses a replayed one), signed with the test-only
keys in crates/jakguard/tests/fixtures/keys (public; never trust them anywhere else).

Usage: python bench/mint_tokens.py ALG COUNT AUDIENCE > tokens.txt   (ALG: ES384 or RS384)
Needs: pip install pyjwt cryptography
"""
import sys
import time
import uuid

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

alg, count, aud = sys.argv[1], int(sys.argv[2]), sys.argv[3]
keys = "crates/jakguard/tests/fixtures/keys"
pem, kid = {
    "ES384": (f"{keys}/es384-private.pem", "test-es384"),
    "RS384": (f"{keys}/rs384-private.pem", "test-rs384"),
}[alg]
# Parsed once: PyJWT would parse a PEM string again for every token (slow for RSA).
key = load_pem_private_key(open(pem, "rb").read(), password=None)
now = int(time.time())
out = sys.stdout
for _ in range(count):
    claims = {"iss": "https://ehr.example.org/", "aud": aud, "iat": now,
              "exp": now + 300, "jti": str(uuid.uuid4())}
    out.write(jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"}))
    out.write("\n")
