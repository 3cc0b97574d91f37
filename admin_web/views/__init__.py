"""Admin views, one module per area; each exposes ``routes`` (a ``web.RouteTableDef``) that
``admin_web.app`` adds to the admin sub-application. Paths are relative to ``/admin``.
"""
