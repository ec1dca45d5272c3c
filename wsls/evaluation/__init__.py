"""wsls.evaluation: scoring trained models on labelled cases like the paper's tables 1 and 2
(``wsls.evaluate``), the tables, the figure and the patch AUC. It imports no training code."""
