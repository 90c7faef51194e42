"""`agent-orders eval`: customer scenarios run against a store's agent through any
OpenAI-compatible endpoint, graded on the database's end state, reported as pass^k."""

from agent_tools.eval.report import pass_hat
from agent_tools.eval.scenario import Scenario, load_scenarios

__all__ = ["Scenario", "load_scenarios", "pass_hat"]
