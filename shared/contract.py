"""The platform's wire contract as constants: URLs per environment, limits, the demo identity.

Both sides read them from here: the probe's configuration (its presets and size checks) and
the emulator that stands in for the platform (what it accepts and refuses). Written down once,
a limit cannot drift between the probe that respects it and the stand-in that enforces it.
docs/platform.md says where each figure comes from.
"""

from __future__ import annotations

REALM = "api-catalog"  # the Keycloak realm on dev and prod alike

# Limits the cloud in front of the collector imposes.
MAX_EVENTS_PER_REQUEST = 500
MAX_EVENT_BYTES = 1024 * 1024
MAX_REQUEST_BYTES = 5 * 1024 * 1024
MAX_CLIENT_FRAME = 32 * 1024  # websocket frames over this are closed with 1009

# The demo identity of the local emulator: not secrets, they only open the emulator.
LOCAL_CLIENT_ID = "dataplatform-probe"
LOCAL_CLIENT_SECRET = "local-demo-secret"
LOCAL_WEBHOOK_TOKEN = "00000000-0000-4000-8000-000000000001"
LOCAL_EMULATOR_PORT = 8081

# Platform URLs per ORIGO_ENVIRONMENT.
PRESETS: dict[str, dict[str, str]] = {
    "local": {
        "keycloak_server": f"http://127.0.0.1:{LOCAL_EMULATOR_PORT}/auth",
        "collector_url": f"http://127.0.0.1:{LOCAL_EMULATOR_PORT}/event-collector/event/{{dataset_id}}/{{version}}",
        "websocket_url": f"ws://127.0.0.1:{LOCAL_EMULATOR_PORT}/event-data-subscription",
        "client_id": LOCAL_CLIENT_ID,
        "client_secret": LOCAL_CLIENT_SECRET,
        "webhook_token": LOCAL_WEBHOOK_TOKEN,
    },
    "dev": {
        "keycloak_server": "https://login-test.oslo.kommune.no/auth",
        "collector_url": "https://api.data-dev.oslo.systems/event-collector/event/{dataset_id}/{version}",
        "websocket_url": "wss://ws.data-dev.oslo.systems/event-data-subscription",
    },
    "prod": {
        "keycloak_server": "https://login.oslo.kommune.no/auth",
        "collector_url": "https://api.data.oslo.systems/event-collector/event/{dataset_id}/{version}",
        "websocket_url": "wss://ws.data.oslo.systems/event-data-subscription",
    },
}
