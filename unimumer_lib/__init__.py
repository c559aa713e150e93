"""unimumer: handwritten mathematical expression recognition with vision-language models.

Data flows one way: InkML files -> records -> task datasets -> trainer -> predictions -> metrics/analysis.
"""

__version__ = "0.1.0"
