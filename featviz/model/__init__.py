"""featviz.model -- every network featviz handles, and the one way stages feed them.

- `spec`: the spec-driven builder and the seeds' networks as presets;
- `checkpoint`: model folders on disk (model.pt + model.json);
- `formats`: networks trained elsewhere (class + state_dict, TorchScript, torch.export);
- `loaded`: `LoadedModel`, which normalizes, batches, predicts and scores;
- `load`: `load_model(folder)`, whatever wrote the folder.

No stage reaches around this package to build or feed a network.
"""
from .checkpoint import load_state_dict, load_weights, save_model
from .load import build_network, load_model
from .loaded import LoadedModel, input_description
from .spec import LAYER_TYPES, PRESETS, build, resolve_layers

__all__ = ["LoadedModel", "input_description", "load_model", "build_network", "save_model", "load_state_dict", "load_weights",
           "build", "resolve_layers", "PRESETS", "LAYER_TYPES"]
