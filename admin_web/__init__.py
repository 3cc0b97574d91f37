"""The admin web site: an aiohttp sub-application mounted at ``/admin`` (docs/admin.md).

``admin_web.app.create_admin_app`` builds it; views live in ``admin_web.views.<area>`` and
stay thin (parse input, call one service in ``core/services``, render a template).
"""
