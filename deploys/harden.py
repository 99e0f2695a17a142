"""pyinfra deploy file: `pyinfra INVENTORY deploys/harden.py` (the code is hardline.deploys.harden).

`hardline deploy INVENTORY` runs the same deploy from an installed hardline (hardline/deploys/entry.py).
"""

from hardline.deploys.harden import harden

harden()
