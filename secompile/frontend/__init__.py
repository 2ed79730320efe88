"""The front end: Spec -> IR (parameter binding, expressions, templates, semantic checks)."""
from .attention import attention_modules, se_rules
from .expand import expand

__all__ = ["expand", "attention_modules", "se_rules"]
