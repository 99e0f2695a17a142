"""pyinfra deploy file of an installed hardline: `hardline deploy INVENTORY` runs pyinfra with it."""

from hardline.deploys.harden import harden

harden()
