"""What users write: the typed source spec (a flow parameter) and the connectors file of a fleet."""
