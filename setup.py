"""Package discovery for the one import root `remitnet`, a namespace
package that three top-level folders each hold a part of:
protos/remitnet/<area> (generated API code), services/remitnet/services and
clients/remitnet/clients. No folder owns `remitnet/__init__.py`, so mypy,
pyright and an editor resolve every `remitnet.*` import from the tree with
the same three roots (pyproject's mypy_path and pyright extraPaths) and no
mirror. Metadata is in pyproject.toml; only the discovery lives here."""

from setuptools import find_namespace_packages, setup

ROOTS = ("protos", "services", "clients")

packages: list[str] = []
package_dir: dict[str, str] = {}
for root in ROOTS:
    for name in find_namespace_packages(root, include=["remitnet.*"], exclude=["*.__pycache__"]):
        packages.append(name)
        package_dir[name] = f"{root}/" + name.replace(".", "/")

setup(packages=packages, package_dir=package_dir)
