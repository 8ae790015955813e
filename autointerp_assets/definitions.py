"""The code location: every asset, its resources, and the in-process executor.

In-process execution keeps one vLLM engine alive across the steps of a run (an engine start costs
~20 s on CPU) and avoids 2-core oversubscription by parallel step processes.
"""

import dagster as dg

from .defs.assets import ALL
from .defs.resources import default_resources

defs = dg.Definitions(assets=ALL, resources=default_resources(), executor=dg.in_process_executor)
