"""Keycloak's admin REST API, for the OAuth tests: clients made per test (confidential, service
account, `zeebe-api` audience mapper, token lifespan), their secret and state changed, and the
realm's login events read back (what Keycloak saw)."""
import json
import os
import urllib.parse
import urllib.request

REALM = "skiff"


class Keycloak:
    def __init__(self, env=os.environ):
        self.url = env["SKIFF_KEYCLOAK_URL"]
        self.token_url = env["SKIFF_KEYCLOAK_TOKEN_URL"]
        self.user = env["SKIFF_KEYCLOAK_ADMIN_USER"]
        self.password = env["SKIFF_KEYCLOAK_ADMIN_PASSWORD"]

    def _admin_token(self) -> str:
        form = urllib.parse.urlencode({"grant_type": "password", "client_id": "admin-cli",
                                       "username": self.user, "password": self.password})
        req = urllib.request.Request(f"{self.url}/realms/master/protocol/openid-connect/token",
                                     data=form.encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)["access_token"]

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/admin/realms/{REALM}{path}", data=data,
                                     method=method)
        req.add_header("Authorization", f"Bearer {self._admin_token()}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
            return json.loads(text) if text else None

    def _id(self, client_id) -> str:
        found = self._call("GET", "/clients?" + urllib.parse.urlencode({"clientId": client_id}))
        return found[0]["id"]

    def create_client(self, client_id, secret, lifespan_s=300, audience="zeebe-api"):
        mappers = [] if not audience else [{
            "name": "audience", "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {"included.custom.audience": audience, "access.token.claim": "true",
                       "id.token.claim": "false"}}]
        self._call("POST", "/clients", {
            "clientId": client_id, "enabled": True, "protocol": "openid-connect",
            "publicClient": False, "clientAuthenticatorType": "client-secret", "secret": secret,
            "serviceAccountsEnabled": True, "standardFlowEnabled": False,
            "directAccessGrantsEnabled": False,
            "attributes": {"access.token.lifespan": str(lifespan_s)},
            "protocolMappers": mappers})

    def update_client(self, client_id, **fields):
        cid = self._id(client_id)
        rep = self._call("GET", f"/clients/{cid}")
        rep.update(fields)
        self._call("PUT", f"/clients/{cid}", rep)

    def delete_client(self, client_id):
        self._call("DELETE", f"/clients/{self._id(client_id)}")

    def events(self, client_id, kind):
        """Login events of the client: kind CLIENT_LOGIN (a token issued) or
        CLIENT_LOGIN_ERROR (a token refused), newest first."""
        q = urllib.parse.urlencode({"client": client_id, "type": kind, "max": 10000})
        return self._call("GET", f"/events?{q}")

    def token(self, client_id, secret) -> str:
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id,
                                       "client_secret": secret, "audience": "zeebe-api"})
        with urllib.request.urlopen(urllib.request.Request(self.token_url, data=form.encode()),
                                    timeout=10) as r:
            return json.load(r)["access_token"]
