"""Each method is a small schedule of events over the shared step primitives in fastkd.engine."""

from .online_kd import OnlineKDFamily
from .schedule import OnlineKDPlan, plan_online_kd

__all__ = ["OnlineKDFamily", "OnlineKDPlan", "plan_online_kd"]
