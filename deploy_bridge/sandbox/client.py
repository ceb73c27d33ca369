"""Host-side view of an env's sandbox open platform: what to point code at, and the simulated buyer."""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

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
    url = cloud.sandbox_url(env) + path
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    context = ssl.create_default_context(cafile=cloud.ca_path())
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")
        with contextlib.suppress(ValueError):
            detail = json.loads(detail).get("error", detail)
        raise MinicloudError(f"sandbox of {cloud.app}/{env}: {detail}") from None
    except OSError as err:
        raise MinicloudError(f"the sandbox of {cloud.app}/{env} does not answer at {url}: {err}",
                             hint=f"minicloud status {env}") from None


def pay(cloud, env: str, out_trade_no: str) -> dict[str, Any]:
    """The buyer pays: WAIT_BUYER_PAY → TRADE_SUCCESS."""
    return _call(cloud, env, "/_sandbox/pay", {"out_trade_no": out_trade_no})
