"""Multi-task training records (vanilla, Tree-CoT, symbol counting, error find/fix): prompts and builders."""

from __future__ import annotations

PROMPT_PREFIX = "I have an image of a handwritten mathematical expression"
# Published Uni-MuMER prompts, byte-exact; the EDL texts come from a third-party copy of the released data.
PROMPTS = {
    "vanilla": PROMPT_PREFIX + ". Please write out the expression of the formula in the image using LaTeX format.",
    "tree": PROMPT_PREFIX + ". Please generate the abstract syntax tree (AST) of the formula in the image, "
            "and then provide its corresponding LaTeX format.",
    "can": PROMPT_PREFIX + ". Please identify and count each distinct visible mathematical symbol in the image, "
           "and then provide its corresponding LaTeX format.",
    "error_find": PROMPT_PREFIX + " and its OCR recognition result. Please help me to detect possible errors in the "
                  "recognition result and mark the places where errors occur with <error_start> <error_end> and "
                  "<deleted>.",
    "error_fix": PROMPT_PREFIX + " and a predicted formula with error tags, correct the formula by modifying the parts "
                 "marked with <error_start> and <error_end> and inserting content where <deleted> are present. Output "
                 "the modifications in a single string with the following format: REPLACE:old -> new for errors to be "
                 "replaced. INSERT:content after position for missing content. DELETE:to_delete for parts to be "
                 "removed.",
}
