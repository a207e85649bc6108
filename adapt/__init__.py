"""adapt: adapt a frozen vision-language model to a domain from an unlabeled image pool."""
import os

# We use transformers for tokenizers and configs only; without PyTorch it would print an advisory
# ("PyTorch was not found...") on every run. An explicit setting of the variable is kept.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

__version__ = "0.1.0"
