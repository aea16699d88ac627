"""Where a worker finds its supervisor: the REST endpoint it was started with answers
GET /v1/address with the supervisor's internal (xoscar) address. Asked at start, and
again when heartbeats fail: a supervisor restarted on another internal port is found."""

import logging
import time
from typing import Optional

import requests

logger = logging.getLogger(__name__)


def supervisor_address_from(endpoint: str, api_key: Optional[str] = None, attempts: int = 30) -> Optional[str]:
    """The internal address, or None if the endpoint did not answer in `attempts` tries
    (a second apart). Under --auth-config it takes an admin key; a refusal ends the
    worker, since no retry can fix it."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for attempt in range(attempts):
        try:
            resp = requests.get(f"{endpoint.rstrip('/')}/v1/address", headers=headers, timeout=5)
            if resp.status_code in (401, 403):
                raise SystemExit(f"The supervisor at {endpoint} refused this worker ({resp.status_code}): "
                                 "start it with --api-key (or XINFERENCE_API_KEY) set to an admin key.")
            resp.raise_for_status()
            return str(resp.json())
        except (requests.RequestException, ValueError) as e:
            logger.debug("asking %s for the supervisor: %s", endpoint, e)
            if attempt + 1 < attempts:
                time.sleep(1)
    return None
