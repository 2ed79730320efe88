"""The ONNX backend: IR -> onnx.ModelProto (`lowering`), initialisers from a state_dict or a
checkpoint, BN folded where asked (`weights`)."""
from .lowering import DEFAULT_OPSET, check_opset, lower, missing_emitters, save

__all__ = ["DEFAULT_OPSET", "check_opset", "lower", "missing_emitters", "save"]
