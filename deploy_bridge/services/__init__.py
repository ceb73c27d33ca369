"""Programs that run inside minicloud's own containers (the `sandbox` image), not on the host.

Architecture Invariant: modules here import only the standard library, `cryptography`, `psycopg` (the
data API and its DocStore), codegen's catalog and ability checks, and each other — exactly what the
image holds (tests check the imports). Modules the host and the editor import too (`alert_rules`,
`data_rules`, `mongo_ops`, `histogram`) use the standard library alone.
"""
