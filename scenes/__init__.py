"""The experiences built on the engine and the features: explore, train, kiosk.

The scenes know the networks (models/registry.py, torch-free) and tell the engine's config their names.
"""

from convscope.engine.config import set_model_names
from convscope.models import registry

set_model_names(registry.names())
