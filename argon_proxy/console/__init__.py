"""The web console and its REST API (see ``web.py``)."""
