"""The jobs that string the others together: mining EDL errors with k-fold models (``mining``), the profiles
(``profiles``) and their notebook steps (``runplan``) that ``reproduce`` runs, and the ``unimumer`` command line
(``options``, ``cli``).
"""
