"""One screen per view (models, versions, fleet, node, runs, run form, live run, ledger) plus help and confirm."""
