"""The simulated edge fleet: loopback addresses, one real sshd, one supervisord per node, an Ansible inventory.

Entry point: :class:`modelfleet.sim.fleet.SimFleet`. Submodules are imported lazily by callers (the CLI keeps
``modelfleet --help`` free of psutil and friends), so this package file imports nothing heavy.
"""
