"""Programs that run inside minicloud's own containers (the `sandbox` image), not on the host.

Architecture Invariant: modules here import only the standard library, `cryptography`, codegen's
catalog and ability checks, and each other — exactly what the image holds (tests check the imports).
"""
