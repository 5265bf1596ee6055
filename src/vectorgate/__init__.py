"""vectorgate: put files into OpenAI vector stores without handing out the OpenAI key."""

__version__ = "0.1.0"
