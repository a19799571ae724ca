"""Shared test configuration. Fixtures live in tests/fixtures/, one module per component."""

pytest_plugins = [
    "tests.fixtures.vault",
    "tests.fixtures.kube",
    "tests.fixtures.git",
    "tests.fixtures.sandbox",
]
