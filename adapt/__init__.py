"""adapt: adapt a frozen vision-language model to a domain from an unlabeled image pool."""

__version__ = "0.1.0"
