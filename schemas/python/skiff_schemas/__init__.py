"""Dataclasses of the Avro schemas in schemas/ (generated)."""
