"""The wheel's packages: the code, plus the files that `metering db upgrade` and the example
prices need outside a checkout.

``alembic.ini``, ``migrations/`` and ``prices/`` stay at the top of the checkout (where
Alembic and the docs expect them) and are mapped into the wheel as the package
``metering._bundled``; ``metering.config.RESOURCE_ROOT`` finds them in either place.
Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

BUNDLED = "metering._bundled"


class BuildPy(build_py):
    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        """The top of the checkout, mapped to ``metering._bundled``, holds this file and no
        module of the bundle: only its package data (alembic.ini) goes in."""
        if package == BUNDLED:
            return []
        return super().find_package_modules(package, package_dir)


setup(
    packages=[
        *find_packages(include=["metering*", "streams*", "bench*"]),
        BUNDLED,
        f"{BUNDLED}.migrations",
        f"{BUNDLED}.migrations.versions",
        f"{BUNDLED}.prices",
    ],
    package_dir={BUNDLED: "."},
    package_data={
        "metering.services": ["*.xml"],
        "metering.files.fonts": ["*.ttf", "LICENSE"],
        BUNDLED: ["alembic.ini"],
        f"{BUNDLED}.migrations": ["*.mako"],
        f"{BUNDLED}.prices": ["*"],
    },
    cmdclass={"build_py": BuildPy},
)
