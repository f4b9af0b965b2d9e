"""Keycloak-like access tokens: RS256-signed JWTs issued and checked by the emulator.

A real signature (not an opaque string) so that a forged or tampered token is
rejected for the same reason the real platform would reject it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping

from jwcrypto import jwk, jws, jwt


class TokenInvalid(Exception):
    """The bearer token is missing, malformed, forged or expired."""


class TokenIssuer:
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._valid: dict[str, float] = {}  # token -> exp; verifying RSA per request is the hot path
        self.rotate()

    def rotate(self) -> None:
        """A new signing key: every token issued so far is rejected from now on."""
        self._key: jwk.JWK = jwk.JWK.generate(kty="RSA", size=2048, kid=uuid.uuid4().hex)
        self._valid.clear()

    def issue(self, client_id: str, lifetime: float) -> tuple[str, int]:
        now = time.time()
        exp = now + lifetime
        claims = {
            "exp": exp,
            "iat": int(now),
            "jti": uuid.uuid4().hex,
            "iss": self.issuer,
            "azp": client_id,
            "typ": "Bearer",
            "scope": "openid",
        }
        token = jwt.JWT(header={"alg": "RS256", "typ": "JWT", "kid": self._key.key_id}, claims=claims)
        token.make_signed_token(self._key)
        text = token.serialize()
        self._valid[text] = exp
        return text, max(1, round(lifetime))

    def verify(self, token: str) -> dict:
        """Claims of a valid token; TokenInvalid otherwise."""
        exp = self._valid.get(token)
        if exp is None:
            try:
                parsed = jws.JWS()
                parsed.deserialize(token)
                parsed.verify(self._key, alg="RS256")
                claims = json.loads(parsed.payload)
                exp = float(claims["exp"])
            except Exception as exc:  # any parse or signature failure means "invalid"
                raise TokenInvalid(type(exc).__name__) from None
        if exp <= time.time():
            self._valid.pop(token, None)
            raise TokenInvalid("expired")
        return {"exp": exp}


def token_answer(
    form: Mapping[str, object], client_id: str, client_secret: str, issuer: TokenIssuer, lifetime: float
) -> tuple[dict, int]:
    """Keycloak's answer to a token request, as (JSON body, status): a token for the one client
    and its secret by the client-credentials grant, Keycloak's own errors otherwise."""
    if form.get("grant_type") != "client_credentials":
        return {"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"}, 400
    if form.get("client_id") != client_id or form.get("client_secret") != client_secret:
        return {
            "error": "unauthorized_client",
            "error_description": "Invalid client or Invalid client credentials",
        }, 401
    token, expires_in = issuer.issue(client_id, lifetime)
    answer = {
        "access_token": token,
        "expires_in": expires_in,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": "openid profile email",
    }
    return answer, 200
