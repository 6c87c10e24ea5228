"""Loopback fakes of the remote services amlops talks to, for tests."""
