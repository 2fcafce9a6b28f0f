"""``vsrdb serve``: a local web page and JSON API over restoration jobs (docs/serve.md).

``jobs`` (the job folders and the runner) needs nothing beyond vsrdb itself; ``app`` (the
web application) needs the serve extra: ``pip install 'vsrdb[serve]'``.
"""
