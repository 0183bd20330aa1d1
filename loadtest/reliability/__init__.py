"""Reliability checks: fuzzing, hostile input, faults, hot reload, soak, auth and shutdown, each run
against real model server and gateway processes on loopback. ``python -m loadtest.reliability``."""
