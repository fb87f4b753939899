"""featviz.ascent -- activation maximization engine (Lucid-optvis-shaped).

Public API::

    from featviz.ascent import visualize, AscentResult, list_recipes, get_recipe, RecipeError
"""
from .memory import auto_chunk_size
from .metrics import class_confidence, robustness
from .recipes import PARAMS, RecipeError, get_recipe, list_recipes
from .render import AscentResult, visualize
from .views import VIEWS, Views

__all__ = [
    "visualize", "AscentResult", "list_recipes", "get_recipe", "RecipeError", "PARAMS",
    "auto_chunk_size", "class_confidence", "robustness", "Views", "VIEWS",
]
