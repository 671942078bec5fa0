"""The broker's accounts: vehicles' credentials in PostgreSQL, and ``telemetry broker run``, which
runs Mosquitto with the project's configuration and keeps its password and ACL files in step
with the table (docs/adr/0007-broker-accounts.md)."""
