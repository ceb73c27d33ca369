"""What the engine reader's pulses mean to the editor (engine_view.read_pulse, one per app's env):

- `minicloud/metrics` to a client that declared `experimental.minicloudMetrics` (VS Code's status bar
  and chart): req/s, errors, p95 per release, containers, firing alerts, the canary split;
- an alert that starts firing: `window/showMessageRequest` with "Show logs" and "Roll back" (any
  LSP client shows it), the answer acted on here; resolved: `window/showMessage`; the manifest's
  diagnostics are republished, so the rule's line carries a warning while it fires;
- a canary that ends: promoted (its release now serves) or removed, as a message.

Everything here runs on the server's event loop; the pulses arrive from the index's reader thread.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

if TYPE_CHECKING:
    from .server import MinicloudServer

log = logging.getLogger(__name__)
METRICS_NOTIFICATION = "minicloud/metrics"
SHOW_LOGS, ROLL_BACK = "Show logs", "Roll back"


def alert_key(alert: dict[str, Any]) -> tuple[str, str]:
    return alert["alert"], alert.get("subject") or ""


def alert_text(alert: dict[str, Any]) -> str:
    on = f" on {alert['subject']}" if alert.get("subject") else ""
    return f"{alert['alert']}{on} ({alert['rule']}): {alert.get('value') or ''}".rstrip(": ")


class Watch:
    """The last pulse of each app, to tell what changed."""

    def __init__(self, server: MinicloudServer) -> None:
        self.server = server
        self.firing: dict[Path, dict[tuple[str, str], dict]] = {}
        self.canary: dict[Path, dict | None] = {}

    def on_pulse(self, root: Path, pulse: dict[str, Any]) -> None:
        """From the index's thread: handle it on the event loop."""
        loop = self.server.main_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.handle, root, pulse)

    def handle(self, root: Path, pulse: dict[str, Any]) -> None:
        app = self.server.apps.get(root)
        name, env = app.name, self.server.env
        live = pulse.get("live")
        if self._wants_metrics():
            self.server.protocol.notify(METRICS_NOTIFICATION, {
                **(live or {"releases": [], "containers": [], "firing": []}), "app": name, "env": env,
                "root": str(root), "canary": pulse.get("canary"), "available": live is not None,
                **({"error": pulse["error"]} if pulse.get("error") else {})})
        if live is None:
            return  # no engine or no metrics now: not a reason to call alerts resolved
        now = {alert_key(a): a for a in live.get("firing", [])}
        before = self.firing.get(root, {})
        self.firing[root] = now
        for key, alert in now.items():
            if key not in before:
                asyncio.ensure_future(self._ask(root, name, env, alert))
        for key, alert in before.items():
            if key not in now:
                self._say(types.MessageType.Info, f"minicloud: {name}/{env} alert resolved: {alert_text(alert)}")
        if set(now) != set(before):
            self.server.publish_app(root)  # the rule's line in minicloud.toml
        self._canary(root, name, env, pulse.get("canary"), live)

    def _wants_metrics(self) -> bool:
        caps = self.server.client_capabilities
        experimental = caps.experimental if caps else None
        return isinstance(experimental, dict) and bool(experimental.get("minicloudMetrics"))

    def _say(self, kind: types.MessageType, text: str) -> None:
        self.server.window_show_message(types.ShowMessageParams(kind, text))

    async def _ask(self, root: Path, name: str, env: str, alert: dict[str, Any]) -> None:
        """The alert as a message with two actions; the one chosen runs like its command."""
        from .commands import open_log_tail, rollback_app

        params = types.ShowMessageRequestParams(
            type=types.MessageType.Warning, message=f"minicloud: {name}/{env} alert firing: {alert_text(alert)}",
            actions=[types.MessageActionItem(SHOW_LOGS), types.MessageActionItem(ROLL_BACK)])
        try:
            chosen = await self.server.window_show_message_request_async(params)
            if chosen is None:
                return
            if chosen.title == SHOW_LOGS:
                await open_log_tail(self.server, str(root), env, since="10m")
            elif chosen.title == ROLL_BACK:
                await rollback_app(self.server, str(root), env)
        except Exception as err:  # noqa: BLE001 - a client that cannot answer, a failed rollback: say it, go on
            log.info("alert action for %s/%s: %s", name, env, err)

    def _canary(self, root: Path, name: str, env: str, canary: dict | None, live: dict[str, Any]) -> None:
        before = self.canary.get(root)
        self.canary[root] = canary
        if before is None or canary is not None:
            return
        serving = {c["release"] for c in live.get("containers", []) if c.get("role") == "app"
                   and c.get("state") == "running"}
        if before.get("canary") in serving:
            self._say(types.MessageType.Info, f"minicloud: {name}/{env} canary {before['canary']} promoted: "
                                              "it serves every user")
        else:
            self._say(types.MessageType.Warning, f"minicloud: {name}/{env} canary {before.get('canary')} removed; "
                                                 f"{before.get('serving')} serves every user")
