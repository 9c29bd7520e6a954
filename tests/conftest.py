"""Fixtures shared by every test (defined in ttq_testing, shared with bench/)."""
from ttq_postgres import database, postgres  # noqa: F401
from ttq_testing import (  # noqa: F401  (pytest finds fixtures and hooks by name here)
    children,
    pytest_runtest_makereport,
    ring,
    shm_left_behind,
    venue,
)
