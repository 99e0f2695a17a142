"""pytest entry to the benchmarks: `pytest benchmarks --inventory inventories/lab.py --junitxml=out.xml`.

The plugin (options, one case per host and control, facts gathered once per host) is
hardline.benchmarks.pytest_plugin, shipped in the package.
"""

from hardline.benchmarks.pytest_plugin import *  # noqa: F401,F403  (hooks and fixtures)
