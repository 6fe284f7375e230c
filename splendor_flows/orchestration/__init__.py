"""What tasks and flows share on the Prefect side: API access, checkpoints, events, connector secrets."""
