"""Host-side view of an env's sandbox open platform: what to point code at, and the simulated buyer."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

import httpx

from ..errors import MinicloudError, NotBuilt


def sandbox_info(cloud, env: str) -> dict[str, Any]:
    """What a user's own code needs: app id, v2 gateway, v3 endpoint, key files, the CA."""
    from codegen.keys import env_keys

    keys = env_keys(cloud.workspace, env)
    if keys is None:
        raise NotBuilt(f"the sandbox of {cloud.app}/{env} has no keys yet", hint=f"minicloud env build {env}")
    base = cloud.sandbox_url(env)
    return {"env": env, "app_id": keys.app_id, "gateway": f"{base}/gateway.do", "endpoint": base,
            "app_private_key_path": str(keys.app_private), "platform_public_key_path": str(keys.platform_public),
            "ca_file": cloud.ca_path()}


def _call(cloud, env: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    from ..swarm import connect_to, env_gateway_address

    # a swarm env's sandbox is behind its manager's gateway: connect there, by the sandbox's own name
    url, request = connect_to(cloud.sandbox_url(env) + path, env_gateway_address(cloud, env))
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=cloud.ca_path()), timeout=10) as client:
            response = (client.post(url, json=payload, **request) if payload is not None
                        else client.get(url, **request))
    except httpx.HTTPError as err:
        raise MinicloudError(f"the sandbox of {cloud.app}/{env} does not answer at {url}: {err}",
                             hint=f"minicloud status {env}") from None
    if response.is_error:
        detail: Any = response.text
        with contextlib.suppress(ValueError, AttributeError):
            detail = response.json().get("error", detail)
        raise MinicloudError(f"sandbox of {cloud.app}/{env}: {detail}")
    return response.json()


def pay(cloud, env: str, out_trade_no: str) -> dict[str, Any]:
    """The buyer pays: WAIT_BUYER_PAY → TRADE_SUCCESS."""
    return _call(cloud, env, "/_sandbox/pay", {"out_trade_no": out_trade_no})


def login(cloud, env: str, user_id: str) -> dict[str, Any]:
    """A test member logs in: a single-use auth code (5 minutes), as `my.getAuthCode` gives a mini-program."""
    if not (len(user_id) == 16 and user_id.isdigit() and user_id.startswith("2088")):
        raise MinicloudError(f"--user {user_id}: a member's user id is 16 digits starting with 2088, "
                             "e.g. 2088102150477652")
    return {**_call(cloud, env, "/_sandbox/auth-code", {"user_id": user_id}), "user_id": user_id, "env": env}
