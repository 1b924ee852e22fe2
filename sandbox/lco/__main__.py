"""``python -m sandbox.lco``: the portal and the archive on one port."""

from sandbox.lco.app import main

main()
