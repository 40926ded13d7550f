"""The trust tests reuse the moderation fixtures: SMTP server, CA bundle, configured apps."""

from tests.moderation.conftest import (  # noqa: F401
    admin_files,
    ca_bundle,
    confirming,
    make_app,
    smtp,
)
