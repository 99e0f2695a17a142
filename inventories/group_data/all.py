"""Data for every host of the inventories in this directory (hardline variables: `hardline variables`)."""

hardline_waivers = [
    {
        "id": "2.12",
        "reason": "No Docker authorization plugin is packaged for Debian 12; access is limited to root (1.1.2).",
        "approved_by": "hardline maintainers",
        "expires": "2027-06-30",
    },
]
