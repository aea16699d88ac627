import os
import sys

from setuptools import setup

# PEP 517 builds do not put the project folder on sys.path; versioneer.py lives here.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import versioneer  # noqa: E402

setup(
    version=versioneer.get_version(),
    cmdclass=versioneer.get_cmdclass(),
)
