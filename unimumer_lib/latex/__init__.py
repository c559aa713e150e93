"""LaTeX captions as token sequences: tokenising, the literature's normalisation and token categories (``tokens``), the
published Uni-MuMER normalisation of CROHME 2023 / MathWriting (``published``), Tree-CoT and symbol counting
(``tree``) and token edit scripts (``align``).
"""
