"""The variables the cloud injects into an app: one definition for the container and for the editor."""

from __future__ import annotations

from .config import Settings
from .database import DB_ALIAS, DB_PORT, DbCredentials
from .manifest import Manifest
from .model import InjectedVar

SECRET_MASK = "••••••"
ALIPAY_KEYS_DIR = "/etc/minicloud/alipay"
CA_FILE = "/etc/minicloud/ca.pem"


def injected(settings: Settings, manifest: Manifest, env: str, creds: DbCredentials | None,
             release: str | None = None, app_id: str | None = None) -> list[InjectedVar]:
    """Every variable with its real value (for the container); `masked()` hides secrets for display."""
    cloud = "minicloud"
    user_vars = f"{manifest.path.name} [env.{env}.vars]"
    out = [
        InjectedVar("MINICLOUD_ENV", env, cloud),
        InjectedVar("MINICLOUD_APP", manifest.name, cloud),
        InjectedVar("MINICLOUD_RELEASE", release or "(the running release id)", cloud),
        InjectedVar("MINICLOUD_URL", settings.url(settings.app_host(manifest.name, env)), cloud),
        InjectedVar("MINICLOUD_CA_FILE", CA_FILE, "minicloud (the local CA certificate, mounted read-only)"),
        InjectedVar("NODE_EXTRA_CA_CERTS", CA_FILE, "minicloud (Node trusts the local CA)"),
        InjectedVar("PORT", str(manifest.port), f"{manifest.path.name} [app].port"),
    ]
    if creds is not None:
        db = f"minicloud (generated database credentials, .minicloud/{env}/db.json)"
        out += [
            InjectedVar("MYSQL_HOST", DB_ALIAS, cloud),
            InjectedVar("MYSQL_PORT", str(DB_PORT), cloud),
            InjectedVar("MYSQL_USER", creds.user, db),
            InjectedVar("MYSQL_PASSWORD", creds.password, db, secret=True),
            InjectedVar("MYSQL_DATABASE", creds.database, db),
            InjectedVar("DATABASE_URL", creds.url(), db, secret=True),
        ]
    if manifest.env(env).sandbox and app_id:
        sandbox = settings.url(settings.sandbox_host(env))
        src = "minicloud sandbox open platform"
        out += [
            InjectedVar("ALIPAY_APP_ID", app_id, src),
            InjectedVar("ALIPAY_GATEWAY", f"{sandbox}/gateway.do", src),
            InjectedVar("ALIPAY_ENDPOINT", sandbox, src),
            InjectedVar("ALIPAY_APP_PRIVATE_KEY_PATH", f"{ALIPAY_KEYS_DIR}/app_private.pem",
                        src + " (key file mounted read-only, never in the image)"),
            InjectedVar("ALIPAY_PUBLIC_KEY_PATH", f"{ALIPAY_KEYS_DIR}/platform_public.pem", src),
        ]
    for name, value in manifest.env(env).vars.items():
        out = [v for v in out if v.name != name]
        out.append(InjectedVar(name, value, user_vars))
    return out


def masked(variables: list[InjectedVar]) -> list[InjectedVar]:
    return [InjectedVar(v.name, SECRET_MASK if v.secret else v.value, v.source, v.secret) for v in variables]


def as_environment(variables: list[InjectedVar]) -> dict[str, str]:
    return {v.name: v.value for v in variables}
