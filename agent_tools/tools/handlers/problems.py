"""After delivery went wrong: the customer reports a problem with their own order.

The result says what happens next, in words the agent can pass on as they are, so it never
has to promise a refund or a date the store did not give.
"""

from __future__ import annotations

from agent_tools.models import ProblemKind
from agent_tools.service import problems, tracking
from agent_tools.tools.args import ReportProblemArgs
from agent_tools.tools.context import Invocation
from agent_tools.tools.handlers.common import Result, Tool, own_order

NEXT_STEPS = (
    "The store has been told and will look into it. Its answer will appear in the order's "
    "history (on the tracking page, and through get_order_status). Nothing has been "
    "decided yet: no refund or replacement is promised until the store answers."
)


async def report_problem(inv: Invocation, a: ReportProblemArgs) -> Result:
    rule = "problems can be reported only on their own orders"
    order = await own_order(inv, a.order_number, rule=rule)
    case, new = await problems.report(inv.conn, order, a.kind, a.details.strip(), by=inv.by)
    result: Result = {
        "case": {
            "id": str(case.id),
            "order_number": order.order_number,
            "kind": case.kind.value,
            "status": case.status.value,
            "reported_at": case.created_at.isoformat(timespec="minutes"),
        },
        "already_reported": not new,
        "what_happens_next": NEXT_STEPS,
        "next": "Tell the customer what_happens_next in your own words; promise nothing more.",
    }
    carrier = tracking.carrier_url(order.carrier, order.tracking_number)
    if case.kind == ProblemKind.not_received and carrier:
        result["carrier_url"] = carrier
    return result


TOOLS: tuple[Tool, ...] = (
    Tool(
        "report_problem",
        "Report a problem with the customer's own shipped order (not received, damaged, "
        "wrong item, other) to the store. Returns the case and what happens next.",
        ReportProblemArgs,
        report_problem,
        writes=True,
    ),
)
