"""Packages: fbench/ as it is, plus two folders of the repository installed under fbench's namespace:
architectures/ as fbench.architectures and suites/ (package data) as fbench.suites."""

from setuptools import find_packages, setup

MAPPED = {"fbench.architectures": "architectures", "fbench.suites": "suites"}

setup(packages=[*find_packages(include=["fbench", "fbench.*"]), *MAPPED], package_dir=MAPPED)
