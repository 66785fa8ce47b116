"""Channels: what a post carries besides its text (caption, knowledge, context, image attributes and regions),
declared once (``spec``), read (``context``: a context's entity list and its alignment to the post), filled from
what a user gives (``sources``), and asked of an LLM (``llm``)."""
