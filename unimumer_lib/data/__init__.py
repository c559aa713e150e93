"""From files to records: reading InkML (``inkml``), rendering ink to images (``render``), preparing a corpus into
images and captions (``prepare``), what a corpus holds (``explore``), synthetic handwriting: random captions
(``captions``) written by hand in Hershey or real glyphs (``handwriting``, ``glyphs``) into datasets (``synth``), and
which images are test images (``splits``, the leak guard).
"""
