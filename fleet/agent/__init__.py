"""The agent: makes this machine's systemd run what the cluster scheduled here."""

from fleet.agent.agent import Agent, AgentRegistry

__all__ = ["Agent", "AgentRegistry"]
