"""The reviewers' console (``vitrine console``): flagged listings in, decisions out.

It reads the review topics as a consumer group, keeps the undecided items in
memory (:mod:`streams.console.queue`), serves them as server-rendered pages
(:mod:`streams.console.web`) and publishes each decision to
``label-corrections`` before the item leaves the queue (:mod:`streams.console.feed`).
"""
