"""The served app's server side: the HTTP API, its jobs, the owner record and mounting routes on a Panel server."""
