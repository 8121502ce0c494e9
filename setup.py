"""Maps the top-level folders onto the one import root `remitnet`:
protos/remitnet (generated API code) is `remitnet`, services/ is
`remitnet.services`, clients/ is `remitnet.clients`. Metadata is in
pyproject.toml; only the package discovery lives here."""

from setuptools import find_packages, setup

ROOTS = {
    "remitnet": "protos/remitnet",
    "remitnet.services": "services",
    "remitnet.clients": "clients",
}

packages = []
for prefix, path in ROOTS.items():
    packages.append(prefix)
    packages += [f"{prefix}.{name}" for name in find_packages(path)]

setup(packages=packages, package_dir=ROOTS)
