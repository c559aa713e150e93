"""From predictions to numbers and pictures: the metrics (``metrics``), paired comparisons (``compare``), error analysis
(``analysis``), the paper's tables (``report``, ``by_structure``), learnability gates (``gates``), charts
(``figures``), the inspector widget (``widgets``) and the drawing pad (``drawing``).
"""
