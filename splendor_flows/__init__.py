"""The installable home of splendor-flows.

It holds the engine, spec models, CLI, demo and connectors-as-code; the top-level flows/, tasks/ and
deployments/ folders install beneath it as splendor_flows.flows, .tasks and .deployments.
"""
