"""The ground floor every other package stands on: atomic file writes and figure saving (``files``), the run folders a
command claims (``outdir``), worker processes and the thread policy (``workers``), read = written + rejected counts
(``tally``), one-line error messages (``errors``) and where data lives (``paths``). It imports nothing else of
unimumer.
"""
