"""``python -m minipeft``: prepare the embedded base model (convert the GGUF once) and print its folder."""

from .book.embedded_models import main

main()
