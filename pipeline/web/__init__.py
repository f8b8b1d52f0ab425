"""``mediamon serve``: the search page (pipeline/web/app.py)."""
